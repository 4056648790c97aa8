"""Flush triggers: buffer size, idle time; a worker restart keeps the buffer and states nothing twice."""

import pytest

from memstream.stack import Stack
from streams.records import OwnerProgress, ProfileSlotChanged
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import consumed_all, records_in_log

pytestmark = pytest.mark.stack_settings.with_args({"max_chat_blob_buffer_token_size": 40, "buffer_flush_interval": 1.5})


async def test_size_trigger_flushes_and_insert_waits_for_it(api: Api) -> None:
    user = new_user()
    small = await api.ok("POST", f"/blobs/insert/{user}", params={"wait_process": "true"}, json=chat("My name is Bob."))
    assert small["chat_results"] == []  # under 40 tokens: buffered, nothing to wait for
    long_text = "I live in Lisbon. " + "We talked about the weather and the trains for a long while. " * 3
    big = await api.ok("POST", f"/blobs/insert/{user}", params={"wait_process": "true"}, json=chat(long_text))
    assert len(big["chat_results"]) == 1 and len(big["chat_results"][0]["add_profiles"]) == 2

    async def done():
        ids = (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "done"}))["ids"]
        return sorted(ids) if len(ids) == 2 else None

    assert await eventually(done, what="both blobs done") == sorted([small["id"], big["id"]])


async def test_idle_buffer_is_flushed_by_the_timer(api: Api) -> None:
    user = new_user()
    task_id = (await api.ok("POST", f"/blobs/insert/{user}", json=chat("My name is Carol.")))["task_id"]

    async def completed():
        status, body = await api.call("GET", f"/tasks/{task_id}")
        return body["data"] if body["errno"] == 0 and body["data"]["status"] == "completed" else None

    task = await eventually(completed, timeout=20, what="idle flush to complete the insert task")
    assert task["results"][0]["add_profiles"]
    profiles = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    assert [p["content"] for p in profiles] == ["Carol"]


async def test_worker_restart_keeps_the_buffer(api: Api, stack: Stack) -> None:
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("My name is Dave."))

    async def idle():
        return (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "idle"}))["ids"]

    await eventually(idle, what="blob buffered")
    await stack.stop_worker()
    stack.settings = stack.settings.model_copy(update={"buffer_flush_interval": 3600.0})
    await stack.start_worker()  # a new owner: the buffer comes back from the state topic
    results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert len(results) == 1 and results[0]["add_profiles"]


async def test_a_restarted_worker_applies_nothing_twice(api: Api, stack: Stack) -> None:
    """The owner commits each batch's facts, state and ingest position in one transaction: a new
    worker resumes right after what the old one committed, and states nothing again."""
    settings = stack.settings
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("My name is Erin."))
    assert len(await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})) == 1
    facts_before = await records_in_log(settings, settings.topic_memory)
    await stack.stop_worker()
    assert await consumed_all(settings, settings.app_id, settings.topic_ingest)  # every command committed as applied
    await stack.start_worker()
    later = new_user()
    await api.ok("POST", f"/blobs/insert/{later}", json=chat("My name is Frank."))
    assert len(await api.ok("POST", f"/users/buffer/{later}/chat", params={"wait_process": "true"})) == 1
    facts_after = await records_in_log(settings, settings.topic_memory)
    assert all(f in facts_after for f in facts_before)
    new = [f for f in facts_after if f not in facts_before and not isinstance(f, OwnerProgress)]
    assert new and {f.user_id for f in new} == {later}  # nothing of Erin's was stated again
    slots = [f for f in facts_after if isinstance(f, ProfileSlotChanged)]
    assert sorted((c.user_id, c.content) for c in slots if c.user_id in (user, later)) == sorted(
        [(user, "Erin"), (later, "Frank")]
    )
