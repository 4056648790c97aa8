"""Memobase's async SDK (``AsyncMemoBaseClient``, 0.0.27), unchanged, against Memstream: the calls
and parameters ``test_sdk`` leaves out — an existing user through ``get_or_create_user``, an async
flush, the profile's ranking parameters, events with a token budget, tag search with values (sync
client: ``AsyncUser`` has none), and every parameter of ``context`` (the SDK builds the query
strings itself)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from memobase import AsyncMemoBaseClient, ChatBlob, MemoBaseClient
from memobase.core.async_entry import AsyncUser

from memstream.stack import Stack
from tests.support.client import new_user
from tests.support.stack import TOKEN

T = TypeVar("T")

CONFIG = """event_tags:
  - name: mood
    description: how the user feels
"""
TEMPLATE = "ABOUT THE USER\n{profile_section}\nWHAT HAPPENED\n{event_section}"


async def polled(call: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:
    """Ask again until the answer is there (bounded), as an app does with an async flush."""
    deadline = time.monotonic() + timeout
    while not (result := await call()) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the server
        await asyncio.sleep(0.1)
    return result


async def four_slots(user: AsyncUser) -> dict[str, str]:
    slots = {f"{p.topic}::{p.sub_topic}": p.content for p in await user.profile()}
    return slots if len(slots) == 4 else {}


async def test_async_sdk_calls_and_parameters(stack: Stack) -> None:
    user_id = new_user()
    async with AsyncMemoBaseClient(project_url=stack.url, api_key=TOKEN) as client:
        assert await client.ping() and await client.update_config(CONFIG)
        user = await client.get_or_create_user(user_id)  # created
        await client.update_user(user_id, {"plan": "pro"})
        again = await client.get_or_create_user(user_id)  # found
        assert again.fields["data"] == {"plan": "pro"}

        said = "Hi, my name is Grace. I live in Rome. I work as a baker and I like figs."
        await user.insert(ChatBlob(messages=[{"role": "user", "content": said}]))
        assert await user.flush(sync=False) is True
        slots = await polled(lambda: four_slots(user))
        assert slots == {
            "basic_info::name": "Grace",
            "basic_info::city": "Rome",
            "work::title": "baker",
            "interest::likes": "figs",
        }

        preferred = await user.profile(prefer_topics=["work", "interest"])
        assert [p.topic for p in preferred][:2] == ["work", "interest"]
        limited = await user.profile(topic_limits={"basic_info": 1})
        assert [p.topic for p in limited].count("basic_info") == 1 and len(limited) == 3
        ranked = await user.profile(chats=[{"role": "user", "content": "Any figs left at the bakery?"}])
        assert ranked[0].content in {"figs", "baker"}

        # An async flush's rows reach ClickHouse table by table: its slots can be read a moment
        # before its event, so the event is asked for again as the slots were.
        [event] = await polled(lambda: user.event(topk=5, max_token_size=500, need_summary=True))
        assert await user.event(max_token_size=1) == []  # no event fits one token
        await user.update_event(str(event.id), {"event_tags": [{"tag": "mood", "value": "cheerful"}]})
        # AsyncUser has no tag search in 0.0.27: the sync client's, in a thread.
        sync_user = MemoBaseClient(project_url=stack.url, api_key=TOKEN).get_user(user_id, no_get=True)
        tagged = await asyncio.to_thread(sync_user.search_event_by_tags, tags=["mood"], tag_values={"mood": "cheerful"})
        assert [str(e.id) for e in tagged] == [str(event.id)]
        assert await asyncio.to_thread(sync_user.search_event_by_tags, tag_values={"mood": "gloomy"}) == []

        only_city = await user.context(
            max_token_size=300,
            only_topics=["basic_info"],
            max_subtopic_size=1,
            profile_event_ratio=0.5,
            require_event_summary=False,
            event_similarity_threshold=0.1,
            time_range_in_days=30,
            chats=[{"role": "user", "content": "Where do I live?"}],
            fill_window_with_events=True,
            full_profile_and_only_search_event=False,
            customize_context_prompt=TEMPLATE,
        )
        assert only_city.startswith("ABOUT THE USER") and "WHAT HAPPENED" in only_city
        assert "baker" not in only_city.split("WHAT HAPPENED")[0]  # only basic_info, one sub_topic
        assert "Rome" in only_city or "Grace" in only_city
        full = await user.context(max_token_size=500, topic_limits={"work": 1}, full_profile_and_only_search_event=True)
        assert "baker" in full and "figs" in full
        assert await client.delete_user(user_id)
