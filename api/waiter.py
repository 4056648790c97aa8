"""Waiting for task results: a broadcast reader of the memory topic.

Each API process reads ``memstream.memory`` from its end (no consumer group, every partition),
and resolves the futures of requests waiting on ``BlobBuffered`` / ``TaskFinished`` records.
A request registers its wait *before* producing its command, so it cannot miss the answer.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import AsyncIterator, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from api.envelope import ApiError
from streams.events import BlobBuffered, TaskFinished, decode

log = logging.getLogger(__name__)
T = TypeVar("T")


class Wait:
    """The two answers a request may wait for about one task id."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.buffered: asyncio.Future[BlobBuffered] = loop.create_future()
        self.finished: asyncio.Future[TaskFinished] = loop.create_future()


class TaskWaiter:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
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
    async def expect(self, task_id: str) -> AsyncIterator[Wait]:
        wait = Wait()
        self._waits[task_id].append(wait)
        try:
            yield wait
        finally:
            self._waits[task_id].remove(wait)
            if not self._waits[task_id]:
                del self._waits[task_id]

    async def _run(self) -> None:
        async for message in self._consumer:
            if not self._waits:
                continue
            try:
                record = decode(message.value)
            except ValidationError:
                log.error("undecodable record on %s at offset %d", message.topic, message.offset)
                continue
            if isinstance(record, BlobBuffered):
                for wait in self._waits.get(record.task_id, []):
                    if not wait.buffered.done():
                        wait.buffered.set_result(record)
            elif isinstance(record, TaskFinished):
                for task_id in record.task_ids:
                    for wait in self._waits.get(task_id, []):
                        if not wait.finished.done():
                            wait.finished.set_result(record)


async def within(future: "asyncio.Future[T]", timeout: float, task_id: str) -> T:
    """Await ``future``; on timeout answer errno 504 — the task itself keeps running."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except asyncio.TimeoutError:
        raise ApiError(
            504, f"task {task_id} is still running after {timeout:g}s; poll GET /api/v1/tasks/{task_id}", task_id=task_id
        ) from None
