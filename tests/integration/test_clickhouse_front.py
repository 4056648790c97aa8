"""The ClickHouse HTTP front (``scripts/clickhouse_front.py``): clickhouse-connect's async client,
through ``ServerStore``, against a chDB path that another process owns; reads must give what the
embedded store gives for the same writes."""

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from memstream.settings import Settings
from memstream.stack import Stack
from projections.blobs import get_blob
from projections.profiles import list_profiles
from projections.rows import ops_for
from projections.schema import migrate
from projections.search import search_events
from projections.store import Store, StoreUnavailable, open_store
from projections.tasks import get_task
from projections.users import get_user
from projections.writer import apply_ops
from scripts.broker import free_port
from scripts.clickhouse_front import ClickHouseFront
from streams.records import (
    BlobStored,
    BlobType,
    EventData,
    EventRecorded,
    ProfileSlotChanged,
    Record,
    UserForgotten,
    UserStored,
)
from tests.support.client import Api, chat, eventually, new_user
from tests.support.stack import TOKEN, migrated_store

DATABASE = "memstream_front_test"
USER, PASSWORD = "memstream", "front: secret"
PROJECT = "default"
AT = datetime(2025, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseFront]:
    front = ClickHouseFront(tmp_path_factory.mktemp("front") / "clickhouse", free_port(), user=USER, password=PASSWORD)
    front.start()
    yield front
    front.stop()


@pytest.fixture(scope="module")
async def served(front: ClickHouseFront) -> AsyncIterator[Store]:
    async with migrated_store(front.url, DATABASE) as store:
        yield store


@pytest.fixture(scope="module")
async def embedded(store: Store) -> Store:
    """The session's embedded store, migrated: the reference for what reads return."""
    await migrate(store)
    return store


async def write_both(records: list[Record], *stores: Store) -> None:
    ops = [op for record in records for op in ops_for(record)]
    for store in stores:
        await apply_ops(store, ops)


async def test_projection_rows_read_back_as_embedded_reads_them(served: Store, embedded: Store) -> None:
    user, profile_id, blob_id, task_id = new_user(), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    data = {"plan": "pro", "note": "it's a \\ tab\there, a line\nthere, é ✓"}
    await write_both(
        [
            UserStored(project_id=PROJECT, user_id=user, seq=1, occurred_at=AT, data=data, created_at=AT),
            BlobStored(
                project_id=PROJECT,
                user_id=user,
                seq=2,
                occurred_at=AT + timedelta(seconds=1),
                blob_id=blob_id,
                task_id=task_id,
                blob_type=BlobType.chat,
                blob_data=chat("Hi, I'm Frank")["blob_data"],
                created_at=AT,
            ),
            ProfileSlotChanged(
                project_id=PROJECT,
                user_id=user,
                seq=3,
                occurred_at=AT + timedelta(seconds=2),
                profile_id=profile_id,
                op="add",
                topic="basic_info",
                sub_topic="name",
                content="Frank",
                source_id="flush-1",
            ),
        ],
        served,
        embedded,
    )

    got = await get_user(served, PROJECT, user)
    assert got == await get_user(embedded, PROJECT, user)
    assert got is not None and got["data"] == data
    assert got["created_at"] == got["updated_at"] == datetime(2025, 3, 4, 5, 6, 7, 891000)  # DateTime64(3), as UTC

    profiles = await list_profiles(served, PROJECT, user)
    assert profiles == await list_profiles(embedded, PROJECT, user)
    assert [(p["id"], p["topic"], p["sub_topic"], p["content"]) for p in profiles] == [
        (profile_id, "basic_info", "name", "Frank")
    ]
    blob = await get_blob(served, PROJECT, user, blob_id)
    assert blob == await get_blob(embedded, PROJECT, user, blob_id)
    assert blob is not None and blob["blob_data"]["messages"][0]["content"] == "Hi, I'm Frank"
    task = await get_task(served, PROJECT, task_id)
    assert task == await get_task(embedded, PROJECT, task_id)
    assert task is not None and task["status"] == "running"


async def test_parameters_bind_by_declared_type_on_the_server(served: Store, embedded: Store) -> None:
    sql = (
        "SELECT {s:String} AS s, {n:Nullable(String)} AS n, {v:Array(Float32)} AS v, {t:DateTime64(3)} AS t, "
        "{id:UUID} AS id, {k:UInt64} AS k"
    )
    params = {
        "s": "x' OR 1=1 -- \\ \t\n {s:String} é",
        "n": None,
        "v": [0.25, -1.5],
        "t": AT,
        "id": uuid.UUID(int=7),
        "k": 2**63,
    }
    rows = await served.query(sql, params)
    assert rows == await embedded.query(sql, params)
    assert rows == [
        {
            "s": params["s"],
            "n": None,
            "v": [0.25, -1.5],
            "t": datetime(2025, 3, 4, 5, 6, 7, 891000),
            "id": uuid.UUID(int=7),
            "k": 2**63,
        }
    ]


async def test_large_array_insert_and_semantic_search(served: Store, embedded: Store) -> None:
    """3000 events × 1536 floats: an 18 MB Native insert (chDB's query() misreads inline data past
    16 MiB, so the front streams it), then a search whose 1536-float parameter goes as a form."""
    user, dims = new_user(), 1536
    target = [0.0] * dims
    target[42] = 1.0
    events = [
        EventRecorded(
            project_id=PROJECT,
            user_id=user,
            seq=i + 1,
            occurred_at=AT + timedelta(milliseconds=i),
            event_id=str(uuid.uuid4()),
            flush_id=f"flush-{i}",
            event_data=EventData(event_tip=f"event {i}"),
            embedding=target if i == 42 else [0.5] * dims,
        )
        for i in range(3000)
    ]
    await write_both(events, served, embedded)

    count = "SELECT count() AS n, sum(length(embedding)) AS floats FROM {db}.events FINAL WHERE user_id = {u:String}"
    for store in (served, embedded):
        assert await store.query(count.replace("{db}", store.database), {"u": user}) == [
            {"n": 3000, "floats": 3000 * dims}
        ]
    search = dict(query="", query_embedding=target, topk=3, similarity_threshold=0.5, time_range_in_days=100_000)
    found = await search_events(served, PROJECT, user, **search)
    assert found == await search_events(embedded, PROJECT, user, **search)
    assert [(row["id"], row["event_data"]["event_tip"]) for row in found] == [(events[42].event_id, "event 42")]
    assert found[0]["similarity"] == pytest.approx(1.0)


async def test_insert_of_many_blocks(served: Store) -> None:
    """clickhouse-connect sends a large insert as several Native blocks, each compressed (lz4) as its own frame."""
    table = f"{DATABASE}.many_blocks"
    await served.command(f"CREATE TABLE IF NOT EXISTS {table} (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    rows = 300_000
    await served.insert(table, [(n, "ab") for n in range(rows)], ["n", "s"])
    assert await served.query(f"SELECT count() AS c, sum(n) AS total FROM {table}") == [
        {"c": rows, "total": rows * (rows - 1) // 2}
    ]


async def test_update_with_a_large_parameter_and_delete(served: Store, embedded: Store) -> None:
    """A user's data large enough to be sent as its own block, then ``UserForgotten``'s lightweight
    DELETEs with their parameters."""
    user, profile_id = new_user(), str(uuid.uuid4())
    big = {"bio": "ok " * 3000}
    await write_both(
        [
            UserStored(project_id=PROJECT, user_id=user, seq=1, occurred_at=AT, data={"plan": "pro"}, created_at=AT),
            ProfileSlotChanged(
                project_id=PROJECT,
                user_id=user,
                seq=2,
                occurred_at=AT,
                profile_id=profile_id,
                op="add",
                topic="basic_info",
                sub_topic="name",
                content="Frank",
                source_id="flush-1",
            ),
            UserStored(
                project_id=PROJECT, user_id=user, seq=3, occurred_at=AT + timedelta(seconds=5), data=big, created_at=AT
            ),
        ],
        served,
        embedded,
    )
    updated = await get_user(served, PROJECT, user)
    assert updated == await get_user(embedded, PROJECT, user)
    assert updated is not None and updated["data"] == big
    assert (updated["created_at"], updated["updated_at"]) == (
        datetime(2025, 3, 4, 5, 6, 7, 891000),
        datetime(2025, 3, 4, 5, 6, 12, 891000),
    )

    await write_both(
        [UserForgotten(project_id=PROJECT, user_id=user, seq=4, occurred_at=AT + timedelta(seconds=9))],
        served,
        embedded,
    )
    assert await get_user(served, PROJECT, user) is None
    assert await list_profiles(served, PROJECT, user) == []
    assert await get_user(embedded, PROJECT, user) is None


async def test_errors_come_back_as_clickhouse_errors(served: Store, front: ClickHouseFront) -> None:
    with pytest.raises(DatabaseError) as failed:
        await served.query(f"SELECT * FROM {DATABASE}.no_such_table")
    assert failed.value.code == 60 and "UNKNOWN_TABLE" in str(failed.value)
    assert not isinstance(failed.value, OperationalError)  # so ServerStore does not call it unavailable
    with pytest.raises(DatabaseError) as failed:
        await served.query("SELECT {n:UInt8} AS n", {"n": "not a number"})
    assert failed.value.code == 457 and not isinstance(failed.value, OperationalError)  # BAD_QUERY_PARAMETER

    with pytest.raises(DatabaseError) as refused:
        await open_store(f"http://{USER}:wrong@{front.host}:{front.port}", DATABASE)
    assert refused.value.code == 516


async def test_stopped_front_is_unavailable_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    front = ClickHouseFront(tmp_path / "clickhouse", free_port())
    front.start()
    store = await open_store(front.url, "memstream_restart")
    try:
        await store.command("CREATE DATABASE IF NOT EXISTS memstream_restart")
        await store.command("CREATE TABLE memstream_restart.kept (k String) ENGINE = MergeTree ORDER BY k")
        await store.insert("memstream_restart.kept", [["survives"]], ["k"])
        assert front.stop() == 0  # SIGTERM: a clean exit, the path released

        with pytest.raises(StoreUnavailable):
            await store.query("SELECT k FROM memstream_restart.kept")

        front.start()
        assert await store.query("SELECT k FROM memstream_restart.kept") == [{"k": "survives"}]
    finally:
        await store.close()
        front.stop()


async def test_api_and_worker_share_the_front(front: ClickHouseFront, make_settings: Callable[..., Settings]) -> None:
    """The worker and the API as two stacks with their own clients, like two processes."""
    settings = make_settings(clickhouse_url=front.url, clickhouse_database=DATABASE)
    worker_store, api_store = await open_store(front.url, DATABASE), await open_store(front.url, DATABASE)
    worker, api_stack = Stack(settings, worker_store, api=False), Stack(settings, api_store, worker=False)
    api = Api(api_stack.url, TOKEN)
    try:
        await worker.start()
        await api_stack.start()
        user = new_user()
        await api.ok("POST", f"/blobs/insert/{user}", json=chat("Hello, my name is Frank."))
        results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
        assert len(results) == 1 and results[0]["add_profiles"]

        async def profiles() -> list[dict]:
            return (await api.ok("GET", f"/users/profile/{user}"))["profiles"]

        found = await eventually(profiles, what="profile rows through the front")
        slots = {(p["attributes"]["topic"], p["attributes"]["sub_topic"]): p["content"] for p in found}
        assert slots[("basic_info", "name")] == "Frank"
    finally:
        await api.close()
        await api_stack.stop()
        await worker.stop()
        await api_store.close()
        await worker_store.close()
