"""``memstream rebuild``: the read models dropped and replayed from the log equal the live ones, row
for row; in place once the workers are stopped (the projection group then continues exactly where
the replay stopped), or into a fresh database beside running workers."""

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from memstream.rebuild import RebuildRefused, Rebuilt, rebuild
from memstream.settings import Settings
from memstream.stack import Stack
from projections.rows import COLUMNS
from projections.schema import TIME, schema_tables
from projections.store import DatabaseView, Store
from projections.writer import ProjectionWriter
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user
from tests.support.history import PROJECT, history_settings, log_size, table_rows

pytestmark = pytest.mark.stack_settings.with_args(history_settings)

Snapshot = dict[str, list[tuple]]
DAVE = {
    "changes": [{"op": "add", "topic": "interest", "sub_topic": "sport", "content": "tennis"}],
    "event_tip": "Dave plays tennis.",
    "event_tags": [{"tag": "mood", "value": "calm"}],
}
LATER = {"changes": [{"op": "add", "topic": "basic_info", "sub_topic": "name", "content": "Eve"}], "event_tip": "Eve."}


@pytest.fixture(scope="module")
async def store(store: Store) -> AsyncIterator[Store]:
    """This module's stack gets a database of its own: an in-place rebuild drops the read models of
    the database it rebuilds, and the session's database is every module's."""
    own = DatabaseView(store, f"rebuild_{uuid.uuid4().hex[:12]}")
    yield own
    await store.command(f"DROP DATABASE IF EXISTS {own.database}")


async def snapshot(store: Store) -> Snapshot:
    """Every read model's FINAL rows of the module's project."""
    return {table: await table_rows(store, table) for table in COLUMNS}


async def projected(writer: ProjectionWriter | None, settings: Settings, since: int = 0) -> None:
    """Wait until ``writer`` has written every record appended to the log after its first ``since``."""

    async def caught_up() -> bool:
        return writer is not None and writer.records_written == await log_size(settings) - since

    await eventually(caught_up, what="the projection writer to catch up with the log")


async def committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def live(history: None, api: Api, llm: ScriptedLLM, stack: Stack, store: Store) -> Snapshot:
    """The replay test's history plus an edited event; the live tables once the writer has it all."""
    dave = new_user()
    llm.script(DAVE)
    await api.ok("POST", f"/blobs/insert/{dave}", json=chat("I play tennis on Sundays."))
    [result] = await api.ok("POST", f"/users/buffer/{dave}/chat", params={"wait_process": "true"})
    await api.ok(
        "PUT", f"/users/event/{dave}/{result['event_id']}", json={"event_tip": "Dave plays tennis and squash."}
    )
    await projected(stack.writer, stack.settings)
    tables = await snapshot(store)
    assert sorted(schema_tables()) == sorted(COLUMNS)  # the rebuild drops exactly the tables compared here
    assert all(tables[t] for t in COLUMNS if t != "projects"), "a live table holds nothing to compare"
    return tables


async def test_refused_while_a_projection_writer_runs(live: Snapshot, stack: Stack, store: Store) -> None:
    with pytest.raises(RebuildRefused, match="active members"):
        await rebuild(stack.settings, store)
    assert await snapshot(store) == live  # refused before dropping anything


async def test_into_a_fresh_database_beside_the_running_workers(
    live: Snapshot, api: Api, stack: Stack, store: Store
) -> None:
    database = f"rebuilt_{uuid.uuid4().hex[:12]}"
    target = DatabaseView(store, database)
    done = await rebuild(stack.settings, store, into=database)
    try:
        assert (done.database, done.group) == (database, f"{stack.settings.projection_group}.{database}")
        assert await snapshot(target) == live
        assert await committed(stack.settings, done.group) == done.stats.ends

        # The swap: a writer of the new group on the new database applies what came after the replay.
        await api.ok("POST", "/users", json={"id": new_user(), "data": {"plan": "team"}})
        writer = ProjectionWriter(stack.settings.model_copy(update={"projection_group": done.group}), target)
        await writer.start()
        try:
            await projected(writer, stack.settings, since=done.stats.read)
        finally:
            await writer.stop()
        await projected(stack.writer, stack.settings)
        assert await snapshot(target) == await snapshot(store)
    finally:
        await store.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="module")
async def rebuilt(live: Snapshot, stack: Stack, store: Store) -> AsyncIterator[tuple[Snapshot, Rebuilt, list[int]]]:
    """Workers stopped, a row the log never had and a table of someone else's added, then an in-place rebuild."""
    await projected(stack.writer, stack.settings)
    await stack.stop_worker()
    before = await snapshot(store)
    await store.command(
        f"INSERT INTO {store.database}.users VALUES ({{p:String}}, 'ghost', '', now64(3), now64(3), 1, 0)",
        {"p": PROJECT},
    )
    await store.command(
        f"CREATE TABLE {store.database}.analyst_notes (note String, at {TIME}) ENGINE = MergeTree ORDER BY at"
    )
    progress: list[int] = []
    done = await rebuild(stack.settings, store, progress=lambda stats: progress.append(stats.done))
    yield before, done, progress
    if not stack.writer:
        await stack.start_worker()


async def test_in_place_gives_every_table_back(
    rebuilt: tuple[Snapshot, Rebuilt, list[int]], stack: Stack, store: Store
) -> None:
    before, done, progress = rebuilt
    after = await snapshot(store)
    for table in COLUMNS:
        assert after[table] == before[table], f"{table} differs after the rebuild"
    assert (done.database, done.group) == (store.database, stack.settings.projection_group)
    assert done.stats.read == await log_size(stack.settings) and done.stats.skipped == 0
    assert progress[0] == 0 and progress[-1] == done.stats.total  # the bar knows its total before the first record
    assert await store.query(f"EXISTS TABLE {store.database}.analyst_notes") == [{"result": 1}]  # not a read model


async def test_workers_continue_where_the_rebuild_stopped(
    rebuilt: tuple[Snapshot, Rebuilt, list[int]], api: Api, llm: ScriptedLLM, stack: Stack, store: Store
) -> None:
    done = rebuilt[1]
    assert await committed(stack.settings, stack.settings.projection_group) == done.stats.ends
    await stack.start_worker()
    eve = new_user()
    llm.script(LATER)
    await api.ok("POST", f"/blobs/insert/{eve}", json=chat("I am Eve."))
    await api.ok("POST", f"/users/buffer/{eve}/chat", params={"wait_process": "true"})
    # Exactly the records appended since the replay's ends: none applied twice, none skipped.
    await projected(stack.writer, stack.settings, since=done.stats.read)
    profiles = await store.query(
        f"SELECT topic, sub_topic, content FROM {store.database}.profiles WHERE project_id = {{p:String}} AND user_id = {{u:String}}",
        {"p": PROJECT, "u": eve},
    )
    assert profiles == [
        {"topic": "basic_info", "sub_topic": "name", "content": "Eve"}
    ]  # no FINAL: one row, written once
    assert (await api.ok("GET", f"/users/profile/{eve}"))["profiles"][0]["content"] == "Eve"


async def test_refused_when_the_log_lost_its_first_records(
    rebuilt: tuple[Snapshot, Rebuilt, list[int]], stack: Stack, store: Store
) -> None:
    """Last: it deletes the head of one memory partition, as an expired retention would."""
    settings = stack.settings
    head = next(tp for tp, end in rebuilt[1].stats.ends.items() if tp.topic == settings.topic_memory and end)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({head: RecordsToDelete(1)})
    finally:
        await admin.close()
    database = f"rebuilt_{uuid.uuid4().hex[:12]}"
    with pytest.raises(
        RebuildRefused, match=rf"lost its first records \({head.topic}\[{head.partition}\] starts at 1\)"
    ):
        await rebuild(settings, store, into=database)
    assert await store.query("SELECT name FROM system.databases WHERE name = {d:String}", {"d": database}) == []
