"""Rebuild: replaying this stack's topics into a fresh database gives the live read models, row for row."""

import uuid
from typing import AsyncIterator

import pytest

from memstream.settings import Settings
from memstream.stack import Stack
from projections.replay import ReplayStats, replay, replayed_topics
from projections.rows import COLUMNS
from projections.schema import migrate
from projections.store import DatabaseView, Store
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import messages_in, partitions, publish_raw
from scripts.scripted_llm import ScriptedLLM

PROJECT = "replay-check"
STACK_SETTINGS = lambda llm: {  # noqa: E731
    "llm_base_url": llm.base_url, "embedding_base_url": llm.base_url, "default_project": PROJECT,
}
CONFIG = "event_tags:\n  - name: mood\n"
FIRST = {
    "changes": [
        {"op": "add", "topic": "basic_info", "sub_topic": "name", "content": "Alice"},
        {"op": "add", "topic": "basic_info", "sub_topic": "city", "content": "Paris"},
    ],
    "event_tip": "Alice introduced herself.",
    "event_tags": [{"tag": "mood", "value": "cheerful"}],
}
SECOND = {
    "changes": [
        {"op": "update", "topic": "basic_info", "sub_topic": "city", "content": "Lyon"},
        {"op": "add", "topic": "interest", "sub_topic": "likes", "content": "jazz"},
    ],
    "event_tip": "Alice moved to Lyon.",
}
GONE = {"changes": [{"op": "add", "topic": "work", "sub_topic": "title", "content": "baker"}], "event_tip": "A baker."}


async def log_size(settings: Settings) -> int:
    """How many records (committed, transaction markers aside) the topics the writer consumes hold now."""
    return len(await messages_in(settings, partitions(settings, *replayed_topics(settings))))


@pytest.fixture(scope="module")
async def history(api: Api, llm: ScriptedLLM, stack: Stack) -> AsyncIterator[None]:
    """A bit of everything: config, users created/updated/deleted, flushes that add, update and
    tag, a manual profile edit, a deleted blob, a stored doc, a chat left in the buffer and a
    record a producer sent that cannot be read (parked on the dead letters)."""
    await api.ok("POST", "/project/profile_config", json={"profile_config": CONFIG})
    alice, bob, carol = new_user(), new_user(), new_user()
    await api.ok("POST", "/users", json={"id": alice, "data": {"plan": "free"}})
    await api.ok("POST", f"/blobs/insert/{alice}", json=chat("Hi, I am Alice."))
    dropped = await api.ok("POST", f"/blobs/insert/{alice}", json=chat("Ignore this one."))

    async def deleted() -> bool:  # once the blob is readable
        return (await api.call("DELETE", f"/blobs/{alice}/{dropped['id']}"))[1]["errno"] == 0
    await eventually(deleted, what="the blob deleted")
    await api.ok("POST", f"/blobs/insert/{alice}", json=chat("I live in Paris."))
    llm.script(FIRST, SECOND, GONE)
    await api.ok("POST", f"/users/buffer/{alice}/chat", params={"wait_process": "true"})
    await api.ok("POST", f"/blobs/insert/{alice}", params={"wait_process": "true"}, json=chat("I moved to Lyon; I love jazz."))
    await api.ok("POST", f"/users/buffer/{alice}/chat", params={"wait_process": "true"})
    await api.ok("PUT", f"/users/{alice}", json={"data": {"plan": "pro"}})
    likes = next(p for p in (await api.ok("GET", f"/users/profile/{alice}"))["profiles"] if p["attributes"]["sub_topic"] == "likes")
    await api.ok("PUT", f"/users/profile/{alice}/{likes['id']}",
                 json={"content": "jazz, blues", "attributes": {"topic": "interest", "sub_topic": "likes"}})

    await api.ok("POST", f"/blobs/insert/{bob}", json=chat("I bake bread."))
    await api.ok("POST", f"/users/buffer/{bob}/chat", params={"wait_process": "true"})
    await api.ok("DELETE", f"/users/{bob}")

    await api.ok("POST", f"/blobs/insert/{carol}", params={"wait_process": "true"},
                 json={"blob_type": "doc", "blob_data": {"content": "Carol's notes"}})
    await api.ok("POST", f"/blobs/insert/{carol}", params={"wait_process": "true"}, json=chat("Still in the buffer."))
    await publish_raw(stack.settings, stack.settings.topic_ingest, f"{PROJECT}:{carol}", b"{not json")  # a dead letter

    async def projected() -> bool:
        assert stack.writer is not None
        return stack.writer.records_written == await log_size(stack.settings)
    await eventually(projected, what="the projection writer to catch up with the log")
    yield


async def table_rows(store: Store, table: str) -> list[tuple]:
    rows = await store.query(
        f"SELECT * FROM {store.database}.{table} FINAL WHERE project_id = {{p:String}} ORDER BY ALL", {"p": PROJECT}
    )
    return [tuple(row.values()) for row in rows]


@pytest.fixture(scope="module")
async def rebuilt(history: None, stack: Stack, store: Store) -> AsyncIterator[tuple[Store, ReplayStats, list[int]]]:
    target = DatabaseView(store, f"replay_{uuid.uuid4().hex[:12]}")
    await migrate(target)
    progress: list[int] = []
    stats = await replay(stack.settings, target, progress=lambda s: progress.append(s.read), batch_size=7)
    yield target, stats, progress
    await store.command(f"DROP DATABASE IF EXISTS {target.database}")


async def test_replay_rebuilds_every_table(rebuilt: tuple[Store, ReplayStats, list[int]], store: Store) -> None:
    target = rebuilt[0]
    for table in ("users", "blobs", "buffer", "profiles", "profile_history", "events", "event_gists",
                  "usage", "project_configs", "tasks", "dead_letters"):
        assert await table_rows(store, table), f"the live {table} table holds nothing to compare"
    for table in COLUMNS:
        assert await table_rows(target, table) == await table_rows(store, table), f"{table} differs after replay"


async def test_replay_reads_the_whole_log_in_batches(rebuilt: tuple[Store, ReplayStats, list[int]], stack: Stack) -> None:
    _, stats, progress = rebuilt
    assert stats.read == await log_size(stack.settings) and stats.skipped == 0 and stats.done == stats.total >= stats.read
    assert sum(stats.by_topic.values()) == stats.read and all(stats.by_topic.values())
    assert progress == [*range(7, stats.read + 1, 7), stats.read]
