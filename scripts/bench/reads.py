"""Reads at scale: ``GET /users/profile`` and ``GET /users/context`` over 1 M users, 10 M profile
slots and 10 M events.

    seeding child (spawned, embedded chDB) ── INSERT … SELECT FROM numbers() ──▶ users/profiles/events
                                           ── OPTIMIZE … FINAL, EXPLAIN indexes = 1, engine-only timings
    generator (this process) ──HTTP──▶ memstream api (child, owns the chDB path) ──▶ chDB

The rows are generated inside ClickHouse, not in Python. After the inserts every table is
merged (``OPTIMIZE … FINAL``): the steady state background merges reach, and what a FINAL read
over a table that has been still for a while costs. The seeding child then runs the API's own
read queries (captured from ``projections.profiles``/``events``/``working_memory`` through a
recording store, so they are exactly what the routes send) under ``EXPLAIN indexes = 1`` and
times them alone, engine only. The API process then serves them at concurrency 1 (service time)
and 16. Each user also has two chat blobs (one extracted, one still buffered), so a context's
working-memory join has rows to read and one message to show.
"""

import argparse
import asyncio
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import aiohttp

from api.user_reads import EVENT_CANDIDATES, WORKING_BLOBS
from projections.events import recent_events
from projections.profiles import list_profiles
from projections.schema import migrate
from projections.store import Row, Store, open_store
from projections.working_memory import unprocessed_chats
from scripts.bench import harness
from scripts.bench.cluster import TOKEN, Services, with_cpu
from scripts.bench.harness import Table, below, latency_ms
from scripts.bench.load import ApiClient, closed_loop

PROJECT = "default"
# At concurrency 16 over an active set: p95, and 3x the throughput of Memobase 0.0.42 on this
# machine (607-847 profile, 202-204 context req/s, measured by hand; the read-path issue).
TARGETS_MS = {"profile": 15.0, "context": 40.0}
THROUGHPUT_TARGETS = {"profile": 3 * 847, "context": 3 * 204}
COLD_TARGET_MS = 50.0  # p95 of a user's first read, at concurrency 1
CACHE_MB = 4096  # room for every active set's copies: what is measured is a hot read, not eviction
DAYS = 180  # the context's default time_range_in_days

# A user's id from its number: a UUID spread over the key space, as real ids are.
USER_ID = "toString(reinterpretAsUUID(sipHash128('user', {n})))"
TOPICS = "['basic_info', 'interest', 'work', 'education', 'life_event', 'psychological', 'demographics', 'health', 'travel', 'contact_info']"
SEED = {
    "users": f"""INSERT INTO {{db}}.users
        SELECT '{PROJECT}', {USER_ID.format(n="number")}, '{{{{}}}}', t, t, 1, 0
        FROM (SELECT number, now64(3) - toIntervalSecond((number * 7919) % ({DAYS} * 86400)) AS t FROM numbers({{users}}))""",
    "profiles": f"""INSERT INTO {{db}}.profiles
        SELECT '{PROJECT}', {USER_ID.format(n="intDiv(number, {per_user})")},
            reinterpretAsUUID(sipHash128('profile', number)),
            arrayElement({TOPICS}, (number % {{per_user}}) % 10 + 1), concat('detail_', toString(number % {{per_user}})),
            concat('likes jazz and trains, lives in Paris, plays the cello; note ', toString(number)), t, t, 1, 0
        FROM (SELECT number, now64(3) - toIntervalSecond((number * 7919) % ({DAYS} * 86400)) AS t FROM numbers({{rows}}))""",
    "events": f"""INSERT INTO {{db}}.events
        (project_id, user_id, event_id, event_data, event_tip, tags, tag_pairs, embedding, created_at, updated_at, version, is_deleted)
        SELECT '{PROJECT}', {USER_ID.format(n="intDiv(number, {per_user})")},
            reinterpretAsUUID(sipHash128('event', number)),
            concat('{{{{"profile_delta":[{{{{"content":"note ', toString(number),
                   '","attributes":{{{{"topic":"interest","sub_topic":"music"}}}}}}}}],"event_tip":"', tip, '","event_tags":null}}}}'),
            tip, [], [], [], t, t, 1, 0
        FROM (SELECT number, concat('Talked about jazz, trains and a walk by the river, day ', toString(number % 365)) AS tip,
                     now64(3) - toIntervalSecond((number * 104729) % ({DAYS} * 86400)) AS t FROM numbers({{rows}}))""",
}
# Two chat blobs per user: one extracted (buffer ``done``), one still in the window (``idle``),
# so a context has working memory to join and show.
SEED["blobs"] = f"""INSERT INTO {{db}}.blobs
    SELECT '{PROJECT}', {USER_ID.format(n="intDiv(number, 2)")}, toString(reinterpretAsUUID(sipHash128('blob', number))), 'chat',
        concat('{{{{"messages":[{{{{"role":"user","content":"I took the train to Lisbon, chat ', toString(number), '"}}}}]}}}}'),
        '{{{{}}}}', now64(3) - toIntervalSecond(number % 86400), now64(3) - toIntervalSecond(number % 86400), 1, 0
    FROM numbers({{users}} * 2)"""
SEED["buffer"] = f"""INSERT INTO {{db}}.buffer
    SELECT '{PROJECT}', {USER_ID.format(n="intDiv(number, 2)")}, toString(reinterpretAsUUID(sipHash128('blob', number))), 'chat',
        if(number % 2 = 0, 'done', 'idle'), '', now64(3) - toIntervalSecond(number % 86400), 1, 0
    FROM numbers({{users}} * 2)"""
TABLES = tuple(SEED)


@dataclass(frozen=True)
class Sizes:
    users: int
    rows_per_user: int  # profile slots and events, each
    seconds: float  # per endpoint and concurrency
    engine_samples: int
    active: tuple[int, ...]  # sizes of the active sets (users read again and again)

    @property
    def sample_users(self) -> int:
        """Users drawn at random: half for first reads, half for the active sets."""
        return 2 * max(max(self.active), 1000)


FULL = Sizes(1_000_000, 10, 10.0, 200, (200, 10_000))
QUICK = Sizes(10_000, 10, 0.5, 20, (200, 1_000))


class Recorder:
    """A store that runs nothing and keeps the SQL the read modules send, to EXPLAIN and time it."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.queries: list[tuple[str, dict[str, Any]]] = []

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        self.queries.append((sql, params or {}))
        return []


async def read_queries(database: str, user_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The queries behind the profile route and the context route (profile, events, working memory)."""
    recorder = Recorder(database)
    await list_profiles(recorder, PROJECT, user_id)  # type: ignore[arg-type]
    await recent_events(recorder, PROJECT, user_id, EVENT_CANDIDATES)  # type: ignore[arg-type]
    await unprocessed_chats(recorder, PROJECT, user_id, WORKING_BLOBS)  # type: ignore[arg-type]
    return dict(zip(("profiles", "events", "working_memory"), recorder.queries))


async def _engine_ms(store: Store, queries: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """Each query alone, one after another: what the engine (and its client) take, no HTTP, no queue."""
    seconds = []
    for sql, params in queries:
        clock = time.perf_counter()
        await store.query(sql, params)
        seconds.append(time.perf_counter() - clock)
    return latency_ms(seconds)


async def seed(path: Path, database: str, sizes: Sizes) -> dict[str, Any]:
    store = await open_store(f"chdb://{path}", database)
    try:
        await migrate(store)
        rows = sizes.users * sizes.rows_per_user
        timings: dict[str, float] = {}
        for table in TABLES:
            clock = time.monotonic()
            await store.command(
                SEED[table].format(db=database, users=sizes.users, rows=rows, per_user=sizes.rows_per_user)
            )
            timings[f"insert_{table}_s"] = round(time.monotonic() - clock, 1)
        for table in TABLES:
            clock = time.monotonic()
            await store.command(f"OPTIMIZE TABLE {database}.{table} FINAL")
            timings[f"optimize_{table}_s"] = round(time.monotonic() - clock, 1)
        parts = await store.query(
            "SELECT table, sum(rows) AS rows, count() AS parts, sum(marks) AS granules, "
            "formatReadableSize(sum(data_compressed_bytes)) AS compressed FROM system.parts "
            "WHERE database = {db:String} AND active AND table IN {tables:Array(String)} GROUP BY table ORDER BY table",
            {"db": database, "tables": list(TABLES)},
        )
        users = [
            r["user_id"]
            for r in await store.query(
                f"SELECT user_id FROM {database}.users ORDER BY rand() LIMIT {sizes.sample_users}"
            )
        ]
        queries = {user: await read_queries(database, user) for user in users[: sizes.engine_samples]}
        explain = {}
        for name, (sql, params) in queries[users[0]].items():
            plan = await store.query(f"EXPLAIN indexes = 1 {sql}", params)
            explain[name] = {"sql": " ".join(sql.split()), "plan": [row["explain"] for row in plan]}
        engine = {name: await _engine_ms(store, [q[name] for q in queries.values()]) for name in explain}
    finally:
        await store.close()
    return {"timings": timings, "tables": parts, "sample_users": users, "explain": explain, "engine_ms": engine}


def seed_in_child(path: Path, database: str, sizes: Sizes) -> dict[str, Any]:
    """Entry point of the seeding process (spawned, so chDB is opened and released there)."""
    return asyncio.run(seed(path, database, sizes))


def summarise_plan(plan: list[str]) -> str:
    """What a plan reads, table by table: ``profiles (FINAL): primary key → parts 1/1, granules 1/1221``."""
    reads: list[dict[str, str]] = []
    index = ""
    for raw in plan:
        line = raw.strip(" │└├─")
        table = re.match(r"ReadFromMergeTree \((.+)\)", line)
        if table:
            reads.append({"table": table[1].split(".")[-1]})
            index = ""
        elif reads and line in ("PrimaryKey", "Partition", "MinMax", "Skip"):
            index = line
        elif reads and line.startswith("FINAL: 1"):
            reads[-1]["final"] = " (FINAL)"
        elif reads and index == "PrimaryKey" and line.split(":")[0] in ("Parts", "Granules"):
            reads[-1][line.split(":")[0].lower()] = line.split(":", 1)[1].strip()
    return (
        "; ".join(
            f"{r['table']}{r.get('final', '')}: primary key → parts {r.get('parts', '?')}, "
            f"granules {r.get('granules', '?')}"
            for r in reads
        )
        or "no table read"
    )


async def _cache_counts(api_url: str) -> dict[str, float]:
    """The API process's read-cache counters, from its ``/metrics`` (hits, misses, bytes)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        async with session.get(api_url.removesuffix("/api/v1") + "/metrics") as response:
            text = await response.text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("hits", "misses", "evictions", "bytes"):
            if line.startswith(f"memstream_read_cache_{name}"):
                counts[name] = counts.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


async def _each_once(client: ApiClient, endpoint: str, users: Sequence[str], concurrency: int) -> float:
    """Read every user once (``concurrency`` at a time); the seconds it took."""
    pending = iter(users)
    clock = time.perf_counter()

    async def worker() -> None:
        for user in pending:
            await client.request("GET", f"/users/{endpoint}/{user}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - clock


async def serve_reads(services: Services, users: list[str], sizes: Sizes) -> list[dict[str, Any]]:
    """Per endpoint: first reads of users this API process has not read (cold: ClickHouse), then
    each active set warmed (every user read once) and read at random at concurrency 1 and 16."""
    client = ApiClient(services.urls)
    cold, warm = users[: len(users) // 2], users[len(users) // 2 :]
    active_sets = {f"{n:,} active": warm[:n] for n in sizes.active if n <= len(warm)}
    rows = []
    try:
        for endpoint in ("profile", "context"):
            fresh = iter(cold)

            async def first_read(endpoint: str = endpoint, fresh: Iterator[str] = fresh) -> bool:
                return (await client.request("GET", f"/users/{endpoint}/{next(fresh)}"))[0]

            result, cpu = await with_cpu(services, closed_loop(first_read, 1, min(sizes.seconds, len(cold) / 200)))
            rows.append(
                {
                    "endpoint": f"GET /users/{endpoint}",
                    "users": "cold (first read)",
                    "concurrency": 1,
                    **result.summary(),
                    "api_cpu": cpu["api-0_cpu"],
                    "p95_target_ms": COLD_TARGET_MS,
                    "met": result.errors == 0 and below(result.summary()["p95_ms"], COLD_TARGET_MS),
                }
            )
            for name, active in active_sets.items():
                warm_s = await _each_once(client, endpoint, active, 16)
                before = await _cache_counts(services.urls[0])

                async def read(endpoint: str = endpoint, active: list[str] = active) -> bool:
                    return (await client.request("GET", f"/users/{endpoint}/{random.choice(active)}"))[0]

                for concurrency in (1, 16):
                    result, cpu = await with_cpu(services, closed_loop(read, concurrency, sizes.seconds))
                    after = await _cache_counts(services.urls[0])
                    looked = (after.get("hits", 0) - before.get("hits", 0)) + (
                        after.get("misses", 0) - before.get("misses", 0)
                    )
                    row = {
                        "endpoint": f"GET /users/{endpoint}",
                        "users": name,
                        "concurrency": concurrency,
                        **result.summary(),
                        "api_cpu": cpu["api-0_cpu"],
                        "warm_s": round(warm_s, 1),
                        "hit_rate": round((after.get("hits", 0) - before.get("hits", 0)) / looked, 3)
                        if looked
                        else None,
                        "cache_mb": round(after.get("bytes", 0) / 2**20, 1),
                    }
                    if concurrency == 16:
                        row["p95_target_ms"] = TARGETS_MS[endpoint]
                        row["req_per_s_target"] = THROUGHPUT_TARGETS[endpoint]
                        row["met"] = (
                            result.errors == 0
                            and below(row["p95_ms"], TARGETS_MS[endpoint])
                            and row["req_per_s"] >= THROUGHPUT_TARGETS[endpoint]
                        )
                    rows.append(row)
                    before = after
    finally:
        await client.close()
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    database = "memstream"
    with tempfile.TemporaryDirectory(prefix="memstream-bench-reads-") as tmp:
        workdir = Path(tmp)
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            seeded = await asyncio.get_running_loop().run_in_executor(
                pool, seed_in_child, workdir / "clickhouse", database, sizes
            )
        async with Services(workdir, api=1, clickhouse_database=database, read_cache_mb=CACHE_MB) as services:
            served = await serve_reads(services, seeded["sample_users"], sizes)
    engine_rows = [{"query": name, **stats} for name, stats in seeded["engine_ms"].items()]
    explain_rows = [{"query": name, "reads": summarise_plan(e["plan"])} for name, e in seeded["explain"].items()]
    tables = [
        Table(
            "Seeded tables (after OPTIMIZE FINAL)",
            ["table", "rows", "parts", "granules", "compressed"],
            seeded["tables"],
        ),
        Table(
            f"API reads, closed loop, {sizes.seconds:g}s each, random users of {sizes.users:,}",
            [
                "endpoint",
                "users",
                "concurrency",
                "req_per_s",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "errors",
                "api_cpu",
                "warm_s",
                "hit_rate",
                "cache_mb",
                "p95_target_ms",
                "req_per_s_target",
                "met",
            ],
            served,
        ),
        Table(
            f"Engine only: each query alone, {sizes.engine_samples} users, no HTTP",
            ["query", "p50_ms", "p95_ms", "p99_ms", "max_ms"],
            engine_rows,
        ),
        Table("EXPLAIN indexes = 1 (what one read touches)", ["query", "reads"], explain_rows),
    ]
    return {
        "sizes": sizes.__dict__,
        "seeding": seeded["timings"],
        "seeded_tables": seeded["tables"],
        "reads": served,
        "engine_ms": seeded["engine_ms"],
        "explain": seeded["explain"],
        "tables": tables,
    }


def cli() -> None:
    harness.main("reads", run, harness.parser("reads", __doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    cli()
