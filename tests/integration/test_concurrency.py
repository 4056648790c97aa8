"""The owner works on many users at once and on each user's records one after another; a user
deleted while their extraction runs stays deleted (issue: the stream runtime).

The scripted LLM answers after a delay, as a hosted model does: with one that answers at once,
a pipeline that extracts one flush at a time looks as fast as one that runs them together.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka.partitioner import murmur2

from memstream.rebuild import rebuild
from memstream.settings import Settings
from memstream.stack import Stack
from projections.rows import USER_TABLES
from projections.store import DatabaseView, Store
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import projected
from tests.support.stack import TOKEN, started

DELAY = 1.0
PARTITIONS = 2


@pytest.fixture(scope="module")
async def slow_llm() -> AsyncIterator[ScriptedLLM]:
    server = ScriptedLLM(delay=DELAY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def slow(
    make_settings: Callable[..., Settings], store: Store, slow_llm: ScriptedLLM
) -> AsyncIterator[tuple[Stack, Api]]:
    stack = await started(make_settings(llm_base_url=slow_llm.base_url, topic_partitions=PARTITIONS), store)
    client = Api(stack.url, TOKEN)
    yield stack, client
    await client.close()
    await stack.stop()


def adds(content: str) -> dict:
    return {"changes": [{"op": "add", "topic": "work", "sub_topic": "title", "content": content}], "event_tip": content}


async def task_status(api: Api, task_id: str) -> str | None:
    status, body = await api.call("GET", f"/tasks/{task_id}")
    return body["data"]["status"] if body["errno"] == 0 else None


async def test_many_users_are_extracted_at_once(slow: tuple[Stack, Api], slow_llm: ScriptedLLM) -> None:
    _, api = slow
    users = [new_user() for _ in range(24)]
    for user in users:
        await api.ok("POST", f"/blobs/insert/{user}", json=chat("My name is Kim."))
    slow_llm.max_in_flight = 0
    started_at = time.monotonic()
    tasks = [(await api.call("POST", f"/users/buffer/{user}/chat"))[1]["task_id"] for user in users]

    async def all_completed() -> bool:
        return all(await asyncio.gather(*(_completed(api, t) for t in tasks)))

    await eventually(all_completed, timeout=30, what="24 flushes extracted")
    elapsed = time.monotonic() - started_at
    received = sorted(r - started_at for r, _ in slow_llm.timeline[-24:])
    print(
        f"\n24 flushes with a {DELAY:g}s LLM: {elapsed:.1f}s, at most {slow_llm.max_in_flight} calls in flight; "
        f"LLM asked from {received[0]:.2f}s to {received[-1]:.2f}s"
    )
    assert slow_llm.max_in_flight >= 20  # one worker had (nearly) every user's extraction under way at once


async def _completed(api: Api, task_id: str) -> bool:
    return await task_status(api, task_id) == "completed"


async def test_a_users_second_flush_is_extracted_after_and_against_the_first(
    slow: tuple[Stack, Api], slow_llm: ScriptedLLM
) -> None:
    _, api = slow
    user = new_user()
    slow_llm.script(
        adds("pilot"),
        {
            "changes": [{"op": "update", "topic": "work", "sub_topic": "title", "content": "pilot, instructor"}],
            "event_tip": "teaches",
        },
    )
    first_request = len(slow_llm.requests)
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I fly planes."))
    first = (await api.call("POST", f"/users/buffer/{user}/chat"))[1]["task_id"]
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I teach flying too."))
    second = (await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"}))[1]
    assert second["errno"] == 0 and second["data"][0]["update_profiles"], second
    assert await task_status(api, first) == "completed"
    (_, first_answered), (second_received, _) = slow_llm.timeline[first_request : first_request + 2]
    assert second_received >= first_answered  # never two extractions of one user at once
    assert "work::title = pilot" in slow_llm.requests[first_request + 1]["messages"][-1]["content"]
    [slot] = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    assert slot["content"] == "pilot, instructor"


def same_partition_as(user: str) -> str:
    """Another user whose records land in ``user``'s partition (the default partitioner's murmur2)."""

    def partition(u: str) -> int:
        return (murmur2(f"default:{u}".encode()) & 0x7FFFFFFF) % PARTITIONS

    return next(u for u in (new_user() for _ in range(1000)) if partition(u) == partition(user))


async def nothing_of(store: Store, user: str) -> dict[str, int]:
    """The user's rows, table by table (FINAL: what reads see), that are not gone."""
    counts = {}
    for table in USER_TABLES:
        deleted = " AND is_deleted = 0" if table in ("users", "blobs", "profiles", "events") else ""
        rows = await store.query(
            f"SELECT count() AS n FROM {store.database}.{table} FINAL WHERE user_id = {{u:String}}{deleted}",
            {"u": user},
        )
        counts[table] = rows[0]["n"]
    return {table: n for table, n in counts.items() if n}


async def test_a_user_deleted_during_their_extraction_stays_deleted(
    slow: tuple[Stack, Api], slow_llm: ScriptedLLM, store: Store
) -> None:
    stack, api = slow
    settings = stack.settings
    user = new_user()
    slow_llm.script(adds("spy"))
    requests = len(slow_llm.requests)
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I am a spy, my name is Bond."))
    await api.call("POST", f"/users/buffer/{user}/chat")
    await eventually(lambda: _asked(slow_llm, requests), what="the extraction under way")
    assert await api.ok("DELETE", f"/users/{user}") is None
    await eventually(lambda: _answered(slow_llm, requests), what="the LLM's answer")
    # A sync flush in the same partition, asked after the answer came, is handled after it.
    neighbour = same_partition_as(user)
    await api.ok("POST", f"/blobs/insert/{neighbour}", json=chat("hello"))
    await api.ok("POST", f"/users/buffer/{neighbour}/chat", params={"wait_process": "true"})
    await caught_up(settings)
    assert await nothing_of(store, user) == {}
    status, body = await api.call("GET", f"/users/{user}")
    assert body["errno"] == 404
    assert (await api.ok("GET", f"/users/profile/{user}"))["profiles"] == []

    await stack.stop_worker()
    await stack.start_worker()
    await api.ok("POST", f"/blobs/insert/{neighbour}", json=chat("hello again"))
    await api.ok("POST", f"/users/buffer/{neighbour}/chat", params={"wait_process": "true"})
    await caught_up(settings)
    assert await nothing_of(store, user) == {}, "the restarted worker brought the deleted user back"

    database = f"rebuilt_{uuid.uuid4().hex[:10]}"
    done = await rebuild(settings, store, into=database)
    try:
        view = DatabaseView(store, done.database)
        assert await nothing_of(view, user) == {}, "a rebuild from the log brought the deleted user back"
        assert await nothing_of(view, neighbour), "the rebuild holds the other user"
    finally:
        await store.command(f"DROP DATABASE IF EXISTS {database}")


async def _asked(llm: ScriptedLLM, before: int) -> bool:
    return len(llm.requests) > before


async def _answered(llm: ScriptedLLM, before: int) -> bool:
    return len(llm.timeline) > before


async def caught_up(settings: Settings) -> None:
    await eventually(
        lambda: projected(settings), timeout=20, what="the projection writer at the end of the memory topic"
    )
