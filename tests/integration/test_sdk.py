"""Memobase's own Python SDK (0.0.27), unchanged, against Memstream."""

import asyncio

from memobase import ChatBlob, MemoBaseClient

from memstream.stack import Stack
from tests.integration.conftest import TOKEN
from tests.support.client import new_user


def sdk_session(url: str, user_id: str) -> dict:
    client = MemoBaseClient(project_url=url, api_key=TOKEN)
    assert client.ping()
    user = client.get_or_create_user(user_id)
    blob_id = user.insert(ChatBlob(messages=[{"role": "user", "content": "Hi, my name is Frank. I live in Oslo."}]))
    user.flush(sync=True)
    return {
        "blob": user.get(blob_id),
        "profile": user.profile(),
        "events": user.event(),
        "context": user.context(),
        "fetched": client.get_user(user_id),
    }


async def test_sdk_round_trip(stack: Stack) -> None:
    user_id = new_user()
    got = await asyncio.to_thread(sdk_session, stack.url, user_id)
    assert got["blob"].messages[0].content.startswith("Hi, my name is Frank")
    assert {(p.topic, p.sub_topic, p.content) for p in got["profile"]} == {("basic_info", "name", "Frank"), ("basic_info", "city", "Oslo")}
    assert len(got["events"]) == 1 and "Frank" in got["events"][0].event_data.event_tip
    assert "Oslo" in got["context"]
    assert got["fetched"].user_id == user_id
