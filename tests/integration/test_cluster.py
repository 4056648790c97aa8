"""The cluster schema variant and the server client's pool, against real ClickHouse: chDB served by
the HTTP front with a config file that declares clusters.

chDB has no Keeper and runs no distributed DDL, so ``ON CLUSTER`` statements and replicated
engines are checked by ClickHouse's parser (``formatQuery``), and then run in the one form chDB
can run: without ``ON CLUSTER``, each replicated engine as its plain twin. The Distributed tables
are real: over ``memstream_test``, one shard that is this chDB itself, and over ``memstream_away``,
a shard that does not answer.
"""

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from projections.cluster_schema import PER_USER, SUFFIX, mutation_target
from projections.profiles import list_profiles
from projections.rows import USER_TABLES, ops_for
from projections.schema import cluster_ddl, schema_tables
from projections.search import Criteria, search_gists
from projections.store import Store, StoreUnavailable, open_store
from projections.tasks import get_task
from projections.usage import daily_usage
from projections.users import get_user, list_users
from projections.working_memory import unprocessed_chats
from projections.writer import apply_ops
from scripts.broker import free_port
from scripts.clickhouse_front import ClickHouseFront
from streams.records import (
    BlobStored,
    BlobType,
    EventData,
    EventGist,
    EventRecorded,
    ProfileSlotChanged,
    Record,
    UsageRecorded,
    UserStored,
)
from tests.support.client import chat, new_user
from tests.support.stack import migrated_store

CLUSTER, AWAY = "memstream_test", "memstream_away"
SINGLE, SHARDED = "memstream_single", "memstream_sharded"
PROJECT = "p"
AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def _config(away_port: int) -> str:
    # tcp_port: the port this chDB would serve on, so a replica at localhost:9000 is "local" and a
    # Distributed table reaches it in-process (chDB opens no port).
    return f"""<clickhouse>
  <tcp_port>9000</tcp_port>
  <macros><shard>01</shard><replica>r1</replica></macros>
  <remote_servers>
    <{CLUSTER}><shard><replica><host>localhost</host><port>9000</port></replica></shard></{CLUSTER}>
    <{AWAY}><shard><replica><host>127.0.0.1</host><port>{away_port}</port></replica></shard></{AWAY}>
  </remote_servers>
</clickhouse>
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseFront]:
    root = tmp_path_factory.mktemp("cluster")
    config = root / "config.xml"
    config.write_text(_config(free_port()))
    front = ClickHouseFront(root / "clickhouse", free_port(), config_file=config)
    front.start()
    yield front
    front.stop()


def runnable_here(sql: str) -> str:
    """``sql`` as chDB runs it: without ``ON CLUSTER``, the replicated engine's plain twin."""
    sql = sql.replace(f" ON CLUSTER `{CLUSTER}`", "")
    return re.sub(r"ReplicatedReplacingMergeTree\('[^']*', '\{replica\}'(?:, )?", "ReplacingMergeTree(", sql)


@pytest.fixture(scope="module")
async def single(front: ClickHouseFront) -> AsyncIterator[Store]:
    """The single-node schema, migrated as ``memstream migrate`` does it."""
    async with migrated_store(front.url, SINGLE) as store:
        yield store


@pytest.fixture(scope="module")
async def sharded(front: ClickHouseFront, single: Store) -> AsyncIterator[Store]:
    """The cluster schema (as chDB can run it), and a store on the cluster."""
    for sql in cluster_ddl(SHARDED, CLUSTER):
        await single.command(runnable_here(sql))
    store = await open_store(front.url, SHARDED, cluster=CLUSTER)
    yield store
    await store.close()


async def test_every_cluster_statement_parses(single: Store) -> None:
    statements = cluster_ddl(SHARDED, CLUSTER)
    deletes = [f"DELETE FROM {mutation_target(SHARDED, t, CLUSTER)} WHERE user_id = 'u'" for t in USER_TABLES]
    for sql in [*statements, *deletes]:
        [row] = await single.query("SELECT formatQuery({q:String}) AS f", {"q": sql})
        assert f"ON CLUSTER {CLUSTER}" in row["f"], sql
    replicated = [sql for sql in statements if "ReplicatedReplacingMergeTree" in sql]
    distributed = [sql for sql in statements if "ENGINE = Distributed" in sql]
    assert len(replicated) == len(distributed) == len(schema_tables()) + 1  # and schema_migrations


async def _tables(store: Store, database: str) -> dict[str, dict[str, object]]:
    rows = await store.query(
        "SELECT name, engine, engine_full, sorting_key FROM system.tables WHERE database = {d:String}", {"d": database}
    )
    columns = await store.query(
        "SELECT table, name, type, position, default_kind, default_expression FROM system.columns "
        "WHERE database = {d:String} ORDER BY table, position",
        {"d": database},
    )
    return {
        row["name"]: {
            **row,
            "columns": [
                (c["name"], c["type"], c["default_kind"], c["default_expression"])
                for c in columns
                if c["table"] == row["name"]
            ],
        }
        for row in rows
    }


async def test_each_cluster_table_is_the_single_node_table(single: Store, sharded: Store) -> None:
    one, many = await _tables(single, SINGLE), await _tables(single, SHARDED)
    assert set(many) == {name for table in one for name in (table, f"{table}{SUFFIX}")}
    for name, table in one.items():
        local, distributed = many[f"{name}{SUFFIX}"], many[name]
        assert local["columns"] == distributed["columns"] == table["columns"], name
        assert local["sorting_key"] == table["sorting_key"], name
        # the same engine arguments (version, is_deleted) and ORDER BY
        assert local["engine_full"] == table["engine_full"], name
        assert distributed["engine"] == "Distributed"
        assert str(distributed["engine_full"]).startswith(f"Distributed('{CLUSTER}', '{SHARDED}', '{name}{SUFFIX}', ")


def _history(user: str, n: int) -> list[Record]:
    """A user's facts touching every per-user table the reads below join."""
    at = AT + timedelta(minutes=n)
    event_id = str(uuid.uuid4())
    of: dict[str, Any] = {"project_id": PROJECT, "user_id": user, "occurred_at": at}
    return [
        UserStored(**of, seq=1, data={"n": n}, created_at=at),
        BlobStored(
            **of,
            seq=2,
            blob_id=str(uuid.uuid4()),
            task_id=f"task-{user}",
            blob_type=BlobType.chat,
            blob_data=chat(f"hello from {n}")["blob_data"],
            created_at=at,
        ),
        ProfileSlotChanged(
            **of,
            seq=3,
            profile_id=str(uuid.uuid4()),
            op="add",
            topic="basic_info",
            sub_topic="name",
            content=f"user {n}",
            source_id="flush-1",
        ),
        EventRecorded(
            **of,
            seq=4,
            event_id=event_id,
            flush_id=event_id,
            event_data=EventData(event_tip=f"went to Kyoto {n}"),
            gists=[EventGist(gist_id=str(uuid.uuid4()), content=f"visited Kyoto {n}")],
        ),
        UsageRecorded(
            **of,
            seq=5,
            source_id=f"flush-{user}",
            model="m",
            calls=1,
            input_tokens=10,
            output_tokens=n,
        ),
    ]


async def _user_reads(store: Store, user: str) -> list[object]:
    return [
        await get_user(store, PROJECT, user),
        await list_profiles(store, PROJECT, user),
        await unprocessed_chats(store, PROJECT, user, 10),
        # a subquery over events inside a query over gists
        await search_gists(store, PROJECT, user, Criteria("kyoto", None, 10, 0.0, 3650)),
        await get_task(store, PROJECT, f"task-{user}"),
    ]


async def test_reads_and_writes_through_the_distributed_tables_answer_as_one_node(
    single: Store, sharded: Store
) -> None:
    users = [new_user(), new_user()]
    ops = [op for n, user in enumerate(users) for record in _history(user, n) for op in ops_for(record)]
    for store in (single, sharded):
        await apply_ops(store, ops)
        await apply_ops(store, ops)  # a writer's retry: FINAL keeps one copy of each row
    for user in users:
        got = await _user_reads(sharded, user)
        assert all(got) and got == await _user_reads(single, user)
    # a join of users with subqueries over profiles and events, each filtered by a subquery over users
    listed, total = await list_users(sharded, PROJECT, "", "created_at", False, 10, 0)
    assert (listed, total) == await list_users(single, PROJECT, "", "created_at", False, 10, 0)
    mine = [u for u in listed if u["id"] in users]
    assert [(u["profile_count"], u["event_count"]) for u in mine] == [(1, 1), (1, 1)]
    days = await daily_usage(sharded, PROJECT, date(2025, 3, 4), date(2025, 3, 4))
    assert days == await daily_usage(single, PROJECT, date(2025, 3, 4), date(2025, 3, 4))
    assert days[0]["total_output_token"] >= 1 and days[0]["total_insert"] >= 2


async def test_a_shard_that_does_not_answer_makes_the_store_unavailable(single: Store, sharded: Store) -> None:
    away = f"{SHARDED}.users_away"
    await single.command(
        f"CREATE TABLE IF NOT EXISTS {away} AS {SHARDED}.users{SUFFIX} "
        f"ENGINE = Distributed('{AWAY}', {SHARDED}, users{SUFFIX}, {PER_USER})"
    )
    # An insert waits for the shard (CLUSTER_SETTINGS) and fails as unavailability: the writer keeps
    # its position and retries, nothing goes to the dead letters. (Sent as a statement: chDB's
    # streaming insert, which the front uses for clickhouse-connect's inserts, queues rows for a
    # remote shard whatever distributed_foreground_insert says; a server does not.)
    with pytest.raises(StoreUnavailable):
        await sharded.command(
            f"INSERT INTO {away} (project_id, user_id, version) VALUES ({{p:String}}, {{u:String}}, 1)",
            {"p": PROJECT, "u": new_user()},
        )
    with pytest.raises(StoreUnavailable):  # a read: the API answers 503
        await sharded.query(f"SELECT count() FROM {away} FINAL")


def _connections_to(port: int) -> set[str]:
    """This process's established TCP connections to ``port`` (their local addresses)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        local, remote, state, inode = (line.split()[i] for i in (1, 2, 3, 9))
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            found.add(local)
    return found


@pytest.mark.parametrize("pool_size", [2, 8])
async def test_the_pool_size_bounds_the_connections_to_the_server(front: ClickHouseFront, pool_size: int) -> None:
    before = _connections_to(front.port)  # the module's other stores
    store = await open_store(front.url, SINGLE, pool_size=pool_size)
    try:
        # 16 at once; the front answers them one at a time, so each waits for a connection or holds one
        answers = await asyncio.gather(
            *(store.query("SELECT {n:UInt32} AS n, sleep(0.02)", {"n": n}) for n in range(16))
        )
        assert [rows[0]["n"] for rows in answers] == list(range(16))
        opened = len(_connections_to(front.port) - before)  # kept alive by the pool after the queries
        assert 1 <= opened <= pool_size
        if pool_size > 2:
            assert opened > 2  # the smaller pool's bound was the setting, not the load
    finally:
        await store.close()
