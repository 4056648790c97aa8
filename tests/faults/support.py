"""Shared parts of the fault drills: a stack on its own broker and its own ClickHouse front, an
insert load that keeps every answer, and counts read straight from ClickHouse.

Each drill owns its broker and its front (child processes in their own sessions, on free
loopback ports, under a tmp dir) because it stops one of them: the session's broker and
embedded ClickHouse are never touched. The front also keeps chDB out of the test process, so
the drills run beside the integration tests (one process can own one chDB path only).

Drills are bounded by counts and deadlines. ``MEMSTREAM_DRILL_LONG=1`` runs more users, more
inserts and longer outages.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store, open_store
from scripts.broker import LocalBroker, free_port
from scripts.clickhouse_front import ClickHouseFront
from tests.support.client import Api, chat, new_user
from tests.support.records import records_in_log
from tests.support.stack import TOKEN

LONG = os.environ.get("MEMSTREAM_DRILL_LONG", "") not in ("", "0")
PROJECT = "default"  # the root token acts for it
DATABASE = "memstream_drill"
TOPICS = ("ingest", "memory", "state", "progress", "dead_letter", "projects")
T = TypeVar("T")


def scaled(short: float, long: float) -> float:
    """``short`` in CI and by default, ``long`` with ``MEMSTREAM_DRILL_LONG=1``."""
    return long if LONG else short


def report(drill: str, **numbers: Any) -> None:
    """One line of measured numbers per drill (shown with ``pytest -s`` or ``-rP``)."""
    shown = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in numbers.items())
    print(f"\nDRILL {drill}: {shown}", flush=True)


def polled(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``read`` as the async check ``eventually`` polls (for conditions on in-memory state)."""

    async def check() -> T:
        return read()

    return check


class LogCount(logging.Handler):
    """Counts the records of one logger whose message starts with ``prefix`` (e.g. the writer's retries)."""

    def __init__(self, logger: str, prefix: str) -> None:
        super().__init__(logging.DEBUG)
        self.prefix, self.count, self.first = prefix, 0, ""
        self._logger = logging.getLogger(logger)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.count += 1
            self.first = self.first or record.getMessage()

    def __enter__(self) -> "LogCount":
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)


# --- the drill's own broker, ClickHouse front and stack ----------------------------------------


@dataclass
class Drill:
    root: Path
    broker: LocalBroker
    front: ClickHouseFront
    store: Store
    settings: Settings
    stack: Stack
    api: Api

    async def take_broker_away(self) -> None:
        """Every client loses the broker (the harness's proxy cuts their connections and refuses new
        ones): what clients see of a crashed broker, without stopping the local one, which can lose
        writes it had acknowledged when it is stopped (a bug of the stand-in Kafka does not have)."""
        await asyncio.to_thread(self.broker.take_down)

    async def bring_broker_back(self) -> None:
        await asyncio.to_thread(self.broker.bring_back)

    async def stop_front(self) -> None:
        assert await asyncio.to_thread(self.front.stop) == 0, "the front did not exit cleanly on SIGTERM"

    async def start_front(self) -> None:
        await asyncio.to_thread(self.front.start)  # same port, same chDB path


def drill_settings(bootstrap: str, clickhouse_url: str, **overrides: Any) -> Settings:
    """Settings for a drill's stack: its own broker, its front, a short produce timeout so an
    outage answers within a couple of seconds, and small buffers so flushes run during the load."""
    base: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "clickhouse_url": clickhouse_url,
        "clickhouse_database": DATABASE,
        "root_token": TOKEN,
        "port": free_port(),
        "topic_partitions": 2,
        "llm_backoff": 0.05,
        "produce_timeout": 2.0,
        "wait_timeout": 30.0,
        "max_chat_blob_buffer_token_size": 60,
        "broker_session_timeout": 6.0,
        "broker_rebalance_timeout": 6.0,
        "health_grace": 1.0,
        **{f"topic_{name}": f"drill.{name}" for name in TOPICS},
        "app_id": "memstream-drill",
        "projection_group": "projections-drill",
    }
    return Settings(**{**base, **overrides})


@contextlib.asynccontextmanager
async def drill_stack(root: Path, **overrides: Any) -> AsyncIterator[Drill]:
    """Broker, front, store (``ServerStore`` through the front), stack and client; torn down in reverse."""
    broker = LocalBroker(root / "broker", free_port())
    front = ClickHouseFront(root / "clickhouse", free_port())
    async with contextlib.AsyncExitStack() as cleanup:
        await asyncio.to_thread(broker.start)
        cleanup.callback(broker.stop)
        await asyncio.to_thread(front.start)
        cleanup.callback(front.stop)
        store = await open_store(front.url, DATABASE)
        cleanup.push_async_callback(store.close)
        settings = drill_settings(broker.bootstrap, front.url, **overrides)
        stack = Stack(settings, store)
        cleanup.push_async_callback(stack.stop)
        await stack.start()
        api = Api(stack.url, TOKEN)
        cleanup.push_async_callback(api.close)
        yield Drill(root, broker, front, store, settings, stack, api)


def worker_state(stack: Stack) -> str:
    """What became of the worker's parts: the evidence a drill shows when they do not recover."""
    return "; ".join(stack.health()) or "worker: healthy"


# --- the load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One insert as the client saw it (times are ``time.monotonic()``)."""

    user: str
    n: int
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all
    errno: int | None
    blob_id: str | None
    task_id: str | None
    errmsg: str = ""

    @property
    def acked(self) -> bool:
        return self.status == 200 and self.errno == 0

    @property
    def refused(self) -> bool:
        """The answer an outage must give: HTTP 503 with errno 503 (the client knows to retry)."""
        return self.status == 503 and self.errno == 503


def said(user: str, n: int) -> str:
    """The chat line of insert ``n`` of ``user``: unique, so a stored blob names its request."""
    return f"drill message {n} from {user}: I walked {n} kilometres today and liked it."


@dataclass
class InsertLoad:
    """``users`` new users inserting chats concurrently, each one after another with ``interval``
    seconds between its inserts and at most ``per_user`` of them, until stopped; every answer is kept."""

    api: Api
    users: int
    per_user: int
    interval: float = 0.05
    user_ids: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> "InsertLoad":
        self.user_ids = [new_user() for _ in range(self.users)]
        self._tasks = [asyncio.create_task(self._run(user), name=f"load-{user}") for user in self.user_ids]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def done(self) -> bool:
        return all(task.done() for task in self._tasks)

    async def _run(self, user: str) -> None:
        for n in range(self.per_user):
            self.answers.append(await insert(self.api, user, n))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return

    def acked(self, after: float = 0.0) -> list[Answer]:
        """Inserts acknowledged (sent at or after ``after``)."""
        return [a for a in self.answers if a.acked and a.started >= after]

    def refused(self, after: float = 0.0, before: float = float("inf")) -> list[Answer]:
        """Inserts answered 503 that were sent and answered within [after, before]."""
        return [a for a in self.answers if a.refused and a.started >= after and a.ended <= before]

    def unexpected(self) -> list[Answer]:
        """Answers that are neither a success nor a clean 503: none may exist."""
        return [a for a in self.answers if not (a.acked or a.refused)]


async def insert(api: Api, user: str, n: int) -> Answer:
    started = time.monotonic()
    try:
        status, body = await api.call("POST", f"/blobs/insert/{user}", json=chat(said(user, n)))
    except Exception as exc:  # noqa: BLE001 - a dropped connection is an answer the drill must see
        return Answer(user, n, started, time.monotonic(), 0, None, None, None, f"{type(exc).__name__}: {exc}")
    data = body.get("data") or {}
    return Answer(
        user,
        n,
        started,
        time.monotonic(),
        status,
        body.get("errno"),
        data.get("id"),
        data.get("task_id"),
        body.get("errmsg", ""),
    )


# --- counts straight from ClickHouse ---------------------------------------------------------


async def scalar(store: Store, sql: str, users: Iterable[str], **params: Any) -> int:
    """``sql`` returning one ``n``, with ``{db}`` and ``{users:Array(String)}`` (the drill's users) bound."""
    rows = await store.query(sql.replace("{db}", store.database), {"users": list(users), **params})
    return int(rows[0]["n"])


async def stored_blob_ids(store: Store, users: Iterable[str]) -> list[str]:
    """Every blob row of ``users`` without FINAL: a row written twice shows twice."""
    rows = await store.query(
        f"SELECT blob_id FROM {store.database}.blobs WHERE project_id = {{p:String}} AND has({{users:Array(String)}}, user_id)",
        {"p": PROJECT, "users": list(users)},
    )
    return [row["blob_id"] for row in rows]


async def blob_counts(store: Store, users: Iterable[str]) -> tuple[int, int]:
    """(rows, rows after FINAL) of the blobs table for ``users``."""
    users = list(users)
    sql = "SELECT count() AS n FROM {db}.blobs%s WHERE project_id = {p:String} AND has({users:Array(String)}, user_id)"
    return (await scalar(store, sql % "", users, p=PROJECT), await scalar(store, sql % " FINAL", users, p=PROJECT))


async def task_statuses(store: Store, users: Iterable[str]) -> dict[str, set[str]]:
    """Every task of ``users`` and the statuses it went through (``running``, ``completed``, ``failed``)."""
    rows = await store.query(
        f"SELECT task_id, groupUniqArray(status) AS statuses FROM {store.database}.tasks FINAL "
        "WHERE project_id = {p:String} AND has({users:Array(String)}, user_id) GROUP BY task_id",
        {"p": PROJECT, "users": list(users)},
    )
    return {row["task_id"]: set(row["statuses"]) for row in rows}


def open_tasks(statuses: dict[str, set[str]]) -> list[str]:
    """Tasks that started and have not ended."""
    return sorted(t for t, s in statuses.items() if not s & {"completed", "failed"})


async def tasks_balance(store: Store, users: Iterable[str]) -> tuple[int, int]:
    """(tasks started, tasks ended) for ``users``: every task that ran must have ended."""
    statuses = await task_statuses(store, users)
    return len(statuses), sum(1 for s in statuses.values() if s & {"completed", "failed"})


async def blob_copies_in_log(settings: Settings, blob_ids: Iterable[str]) -> dict[str, int]:
    """How many BlobInserted records the ingest topic holds for each of ``blob_ids``: tells a blob
    the log holds twice (the producer or broker) from one the projection wrote twice."""
    copies = {blob_id: 0 for blob_id in blob_ids}
    for record in await records_in_log(settings, settings.topic_ingest):
        blob_id = getattr(record, "blob_id", None)
        if blob_id in copies:
            copies[blob_id] += 1
    return copies
