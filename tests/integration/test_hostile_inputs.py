"""Odd-but-possible inputs against the whole pipeline (offline extractor): each is refused with a
clear 413 naming the limit, or processed; every accepted task ends; nothing stops anyone else.

Producers publishing straight to the ingest topic get the same bounds: what the owner cannot
take goes to the dead letters with its reason, its task ends ``failed``, and the next record is
processed."""

import json
import uuid
from typing import Any

import pytest

from memstream.stack import Stack
from streams.records import BlobInserted, BlobType, utc_now
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import parked_messages, publish, publish_raw

pytestmark = pytest.mark.stack_settings.with_args({"max_chat_blob_buffer_token_size": 200})


def messages(*contents: str) -> dict[str, Any]:
    return {"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": c} for c in contents]}}


async def ended(api: Api, task_id: str) -> str | None:
    _, body = await api.call("GET", f"/tasks/{task_id}")
    status = body["data"]["status"] if body["errno"] == 0 else None
    return status if status in ("completed", "failed") else None


async def someone_else_still_flushes(api: Api) -> None:
    other = new_user()
    await api.ok("POST", f"/blobs/insert/{other}", json=chat("My name is Zoe."))
    [result] = await api.ok("POST", f"/users/buffer/{other}/chat", params={"wait_process": "true"})
    assert result["add_profiles"]


async def test_too_many_messages_or_bytes_are_refused_naming_the_limit(api: Api) -> None:
    user = new_user()
    status, body = await api.call("POST", f"/blobs/insert/{user}", json=messages(*[""] * 30_000))
    assert (status, body["errno"]) == (413, 413), body
    assert "30000 messages, at most 500 per blob" in body["errmsg"] and "MEMSTREAM_MAX_BLOB_MESSAGES" in body["errmsg"]
    status, body = await api.call("POST", f"/blobs/insert/{user}", json=messages("x" * 900_000))
    assert (status, body["errno"]) == (413, 413), body
    assert body["errmsg"].startswith("body.blob_data:") and "at most 262144 per blob" in body["errmsg"]
    status, body = await api.call(
        "POST", f"/blobs/insert/{user}", json={"blob_type": "doc", "blob_data": {"content": "d" * 300_000}}
    )
    assert (status, body["errno"]) == (413, 413) and "MEMSTREAM_MAX_BLOB_BYTES" in body["errmsg"], body
    await someone_else_still_flushes(api)


async def test_empty_messages_by_the_thousand_are_processed(api: Api) -> None:
    user = new_user()
    tasks = [(await api.ok("POST", f"/blobs/insert/{user}", json=messages(*[""] * 500)))["task_id"] for _ in range(4)]
    for task in tasks:  # each blob fills a window by its message count: no tokens needed
        assert await eventually(lambda t=task: ended(api, t), what="an empty-messages task ending") == "completed"
    await someone_else_still_flushes(api)


async def test_long_messages_and_whitespace_runs_are_processed(api: Api) -> None:
    user = new_user()
    spaces = "I live in" + " " * 24_000 + "Oslo and my name is Ola" + "\n" * 24_000
    long = "word " * 40_000  # 200 KB, under the blob bound
    for text in (spaces, long):
        await api.ok("POST", f"/blobs/insert/{user}", json=chat(text))
    # the flush covers whatever the size trigger had not closed already, and ends after it
    await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true", "wait_timeout": "30"})
    slots = {
        p["attributes"]["sub_topic"]: p["content"] for p in (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    }
    assert slots == {"city": "Oslo", "name": "Ola"}
    context = (await api.ok("GET", f"/users/context/{user}", params={"max_token_size": "300"}))["context"]
    assert "Oslo" in context
    await someone_else_still_flushes(api)


async def test_deep_fields_are_stored_as_sent(api: Api) -> None:
    user = new_user()
    deep: Any = "leaf"
    for depth in range(100):
        deep = {f"level{depth}": deep}
    inserted = await api.ok("POST", f"/blobs/insert/{user}", json={**chat("hi"), "fields": deep})

    async def stored() -> Any:
        _, body = await api.call("GET", f"/blobs/{user}/{inserted['id']}")
        return body["data"] if body["errno"] == 0 else None

    assert (await eventually(stored, what="the blob"))["fields"] == deep
    await someone_else_still_flushes(api)


async def dead_letters(stack: Stack) -> list[tuple[dict[str, Any] | bytes, str]]:
    """Every dead letter so far: its value (parsed when JSON) and its error header."""
    out = []
    for message in await parked_messages(stack.settings):
        try:
            value: dict[str, Any] | bytes = json.loads(message.value)
        except ValueError:
            value = message.value
        out.append((value, dict(message.headers)["error"].decode()))
    return out


async def test_records_a_producer_publishes_that_cannot_be_taken_go_to_the_dead_letters(api: Api, stack: Stack) -> None:
    settings = stack.settings
    user = new_user()
    await publish_raw(settings, settings.topic_ingest, f"default:{user}", b"{not json")
    await publish_raw(
        settings, settings.topic_ingest, f"default:{user}", json.dumps({"v": 2, "kind": "no_such_kind"}).encode()
    )
    oversized = BlobInserted(
        project_id="default",
        user_id=user,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type=BlobType.chat,
        blob_data=messages(*["x"] * 600)["blob_data"],
        created_at=utc_now(),
    )
    nowhere = BlobInserted(
        project_id="no_such_project",
        user_id=user,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type=BlobType.chat,
        blob_data=chat("hi")["blob_data"],
        created_at=utc_now(),
    )
    await publish(settings, settings.topic_ingest, oversized, nowhere)
    assert await eventually(lambda: ended(api, oversized.task_id), what="the oversized blob's task") == "failed"
    _, body = await api.call("GET", f"/tasks/{oversized.task_id}")
    assert "600 messages, at most 500" in body["data"]["error"]

    async def parked() -> list[str] | None:
        errors = [error for _, error in await dead_letters(stack)]
        return errors if len(errors) >= 4 else None

    errors = await eventually(parked, what="four dead letters")
    assert any(e.startswith("not JSON") for e in errors)
    assert any("not a record the ingest topic carries" in e for e in errors)
    assert any("600 messages, at most 500" in e for e in errors)
    assert any("project 'no_such_project' does not exist" in e for e in errors)
    await someone_else_still_flushes(api)
