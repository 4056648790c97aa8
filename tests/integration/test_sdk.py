"""Memobase's own Python SDK (0.0.27), unchanged, against Memstream: every call of its
``MemoBaseClient`` and ``User`` classes, used the way a new user would, on the offline
extractor that ``memstream dev`` runs without an LLM."""

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from memobase import ChatBlob, MemoBaseClient
from memobase.core.blob import BlobType, DocBlob
from memobase.error import ServerError

from memstream.stack import Stack
from tests.support.client import new_user
from tests.support.stack import TOKEN

T = TypeVar("T")

CONFIG = """language: en
additional_user_profiles:
  - topic: pets
    sub_topics:
      - name: dog
        description: the user's dog
event_tags:
  - name: mood
    description: how the user feels
"""


def polled(call: Callable[[], T], timeout: float = 20.0) -> T:
    """What an app does with an async API: ask again until the answer is there (bounded)."""
    deadline = time.monotonic() + timeout
    while not (result := call()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def sdk_session(url: str, user_id: str) -> dict[str, Any]:
    """One SDK session: project calls, a user's blobs, profile, events and context."""
    got: dict[str, Any] = {}
    client = MemoBaseClient(project_url=url, api_key=TOKEN)
    got["ping"] = client.ping()
    got["config_set"] = client.update_config(CONFIG)
    got["config"] = client.get_config()
    user = client.get_or_create_user(user_id)
    got["updated_id"] = client.update_user(user_id, {"plan": "pro"})
    got["fetched"] = client.get_user(user_id)

    blob_id = user.insert(ChatBlob(messages=[{"role": "user", "content": "Hi, my name is Frank. I live in Oslo."}]))
    doc_id = user.insert(DocBlob(content="Frank's notes"))
    got["idle_buffer"] = polled(lambda: user.buffer(BlobType.chat, "idle"))
    got["flushed"] = user.flush(sync=True)
    got["blob"] = user.get(blob_id)
    got["chat_ids"] = user.get_all(BlobType.chat)
    got["done_buffer"] = user.buffer(BlobType.chat, "done")
    user.insert(ChatBlob(messages=[{"role": "user", "content": "I work as a sailor and I like herring."}]), sync=True)
    user.flush(sync=True)
    got["deleted_doc"] = user.delete(doc_id)
    got["doc_ids_after_delete"] = user.get_all(BlobType.doc)

    got["profile"] = user.profile()
    got["profile_json"] = user.profile(need_json=True, only_topics=["basic_info"], max_subtopic_size=1)
    added = user.add_profile("Rex, a terrier", "pets", "dog")
    got["added_id"] = added
    user.update_profile(added, "Rex, a wire-haired terrier", "pets", "dog")
    got["after_update"] = {str(p.id): p.content for p in user.profile()}
    user.delete_profile(added)
    got["after_delete"] = {str(p.id) for p in user.profile()}

    events = user.event(topk=5)
    got["events"] = events
    user.update_event(str(events[0].id), {"event_tip": "Frank told us about his job at sea"})
    got["updated_events"] = user.event(topk=5)
    got["search"] = user.search_event("job at sea")
    got["gists"] = user.search_event_gist("Oslo")
    got["by_tags"] = user.search_event_by_tags(tags=["mood"])
    got["context"] = user.context(
        max_token_size=400, prefer_topics=["work"], chats=[{"role": "user", "content": "Where do I live?"}]
    )
    user.delete_event(str(events[-1].id))
    got["events_after_delete"] = user.event(topk=5)

    got["users"] = client.get_all_users(search=user_id[:8])
    got["daily_usage"] = client.get_daily_usage(7)
    got["billing"] = client.get_usage()
    got["user_deleted"] = client.delete_user(user_id)
    try:
        client.get_user(user_id)
        got["gone"] = False
    except ServerError:
        got["gone"] = True
    got["created_id"] = client.add_user({"name": "second"})
    return got


@pytest.fixture(scope="module")
async def session(stack: Stack) -> dict[str, Any]:
    user_id = new_user()
    return {"user_id": user_id, **await asyncio.to_thread(sdk_session, stack.url, user_id)}


async def test_project_calls(session: dict[str, Any]) -> None:
    assert session["ping"] is True and session["config_set"] is True
    assert session["config"] == CONFIG
    users = session["users"]
    assert [u["id"] for u in users] == [session["user_id"]]
    assert isinstance(session["daily_usage"], list) and len(session["daily_usage"]) == 7
    assert "project_token_cost_month" in session["billing"]
    assert session["user_deleted"] is True and session["gone"] is True
    assert session["created_id"] != session["user_id"]


async def test_user_and_blob_calls(session: dict[str, Any]) -> None:
    assert session["updated_id"] == session["user_id"]
    assert session["fetched"].fields["data"] == {"plan": "pro"}
    assert session["blob"].messages[0].content.startswith("Hi, my name is Frank")
    assert len(session["idle_buffer"]) == 1 and session["done_buffer"] == session["idle_buffer"]
    assert len(session["chat_ids"]) == 1
    assert session["deleted_doc"] is True and session["doc_ids_after_delete"] == []
    assert session["flushed"] is True


async def test_profile_calls(session: dict[str, Any]) -> None:
    profile = {(p.topic, p.sub_topic): p.content for p in session["profile"]}
    assert profile[("basic_info", "name")] == "Frank" and profile[("basic_info", "city")] == "Oslo"
    assert profile[("work", "title")] == "sailor" and profile[("interest", "likes")] == "herring"
    assert list(session["profile_json"]) == ["basic_info"] and len(session["profile_json"]["basic_info"]) == 1
    assert session["after_update"][session["added_id"]] == "Rex, a wire-haired terrier"
    assert session["added_id"] not in session["after_delete"]


async def test_event_and_context_calls(session: dict[str, Any]) -> None:
    assert len(session["events"]) == 2
    tips = [e.event_data.event_tip for e in session["updated_events"]]
    assert "Frank told us about his job at sea" in tips
    assert session["search"] and session["search"][0].event_data.event_tip == "Frank told us about his job at sea"
    assert any("Oslo" in g.gist_data.content for g in session["gists"])
    assert session["by_tags"] == []  # the offline extractor tags nothing
    assert "Oslo" in session["context"] and "sailor" in session["context"]
    assert len(session["events_after_delete"]) == 1
