"""What handlers need, attached to the aiohttp application, and the write patterns they share."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from api.auth import PROJECT
from api.envelope import ApiError
from api.positions import Consistency
from api.producer import Producer
from api.user_reads import UserReads
from api.waiter import TaskWaiter, within
from memstream.metrics import Metrics
from memstream.settings import Settings
from projections.store import Store
from streams.embeddings import Embedder
from streams.records import EditApplied, Record


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Store
    producer: Producer
    waiter: TaskWaiter
    consistency: Consistency
    embedder: Embedder | None  # None: search ranks by words
    health: Callable[[], list[str]]  # why the process's parts are not working; empty when they are
    metrics: Metrics  # this process's registry (GET /metrics)
    reads: UserReads  # profile slots, newest events, unprocessed chats: hot users' from memory


DEPS = web.AppKey("deps", Deps)
PROBE_AFTER = 0.25  # seconds a read waits for the writer before checking that ClickHouse is there at all


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def project_of(request: web.Request) -> str:
    return request[PROJECT]


async def settled(request: web.Request, user_id: str | None = None) -> Deps:
    """The request's deps, once the read models hold every write made before it (of the user, or
    of the whole project when ``user_id`` is None)."""
    d, project = deps(request), project_of(request)
    try:
        async with asyncio.timeout(PROBE_AFTER):
            await d.consistency.settled(project, user_id)
        return d
    except TimeoutError:
        await d.store.query("SELECT 1")  # when ClickHouse is away (why the writer is behind): 503 at once
    await d.consistency.settled(project, user_id)
    return d


async def write_readable(d: Deps, record: Record, what: str) -> None:
    """Send a command the owner applies at once, and return once ClickHouse holds what it stated."""
    landed = await d.producer.send(d.settings.topic_ingest, record)
    await d.consistency.until_applied(landed.partition, landed.offset, what)


async def edit_readable(d: Deps, record: Record, what: str) -> EditApplied:
    """Send an edit the owner applies in the user's turn (after an extraction under way), wait for
    its ``EditApplied`` and until ClickHouse holds it; errno 504 when that takes longer than
    ``MEMSTREAM_READ_YOUR_WRITES_TIMEOUT`` (the edit still happens), errno 500 when it failed."""
    async with d.waiter.expect(record.record_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        try:
            applied = await within(expected.applied, d.settings.read_your_writes_timeout, record.record_id)
        except ApiError:
            raise ApiError(
                504,
                f"{what} is queued behind the user's work under way and not applied after "
                f"{d.settings.read_your_writes_timeout:g}s; it will be, retry the read shortly",
            ) from None
    await d.consistency.until_projected(applied.partition, applied.offset, what)
    if applied.fact.outcome == "failed":
        raise ApiError(500, f"{what} failed: {applied.fact.reason}")
    return applied.fact
