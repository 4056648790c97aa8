"""Waiting for the facts that end a request's work: a broadcast reader of the memory topic.

Each API process reads ``memstream.memory`` from its end (no consumer group, every partition, as
committed), and resolves the futures of requests waiting on a ``BlobStored`` or ``TaskFinished``
of a task, or the ``EditApplied`` of an edit, with where the fact is in the log (so the request
can then wait for ClickHouse to hold it). A request registers its wait *before* producing its
command, so it cannot miss the answer.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from api.envelope import ApiError
from streams.records import FACTS, BlobStored, EditApplied, TaskFinished, Undecodable

log = logging.getLogger(__name__)
T = TypeVar("T")
F = TypeVar("F")


@dataclass(frozen=True)
class Located(Generic[F]):
    fact: F
    partition: int
    offset: int


class Wait:
    """The answers a request may wait for about one task or edit id."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.stored: asyncio.Future[Located[BlobStored]] = loop.create_future()
        self.finished: asyncio.Future[Located[TaskFinished]] = loop.create_future()
        self.applied: asyncio.Future[Located[EditApplied]] = loop.create_future()


class TaskWaiter:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level="read_committed"
        )
        self._waits: dict[str, list[Wait]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, so nothing produced after start is skipped
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="task-waiter")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    @contextlib.asynccontextmanager
    async def expect(self, key: str) -> AsyncIterator[Wait]:
        """Wait for the facts of the task or edit ``key`` while the block runs."""
        wait = Wait()
        self._waits[key].append(wait)
        try:
            yield wait
        finally:
            self._waits[key].remove(wait)
            if not self._waits[key]:
                del self._waits[key]

    def _resolve(self, keys: list[str], future: str, located: Located[object]) -> None:
        for key in keys:
            for wait in self._waits.get(key, []):
                target: asyncio.Future[object] = getattr(wait, future)
                if not target.done():
                    target.set_result(located)

    async def _run(self) -> None:
        async for message in self._consumer:
            if not self._waits:
                continue
            try:
                record = FACTS.decode(message.value)
            except Undecodable as exc:
                log.error("undecodable record on %s at offset %d: %s", message.topic, message.offset, exc)
                continue
            located = Located(record, message.partition, message.offset)
            if isinstance(record, BlobStored):
                self._resolve([record.task_id], "stored", located)
            elif isinstance(record, TaskFinished):
                self._resolve(record.task_ids, "finished", located)
            elif isinstance(record, EditApplied):
                self._resolve([record.edit_id], "applied", located)


async def within(future: "asyncio.Future[T]", timeout: float, task_id: str) -> T:
    """Await ``future``; on timeout answer errno 504 — the task itself keeps running."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise ApiError(
            504,
            f"task {task_id} is still running after {timeout:g}s; poll GET /api/v1/tasks/{task_id}",
            task_id=task_id,
        ) from None
