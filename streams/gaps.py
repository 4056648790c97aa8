"""Making sure the agents see every record of their partitions, whatever Faust does on a rebalance.

faust-streaming 0.15.3 (with aiokafka 0.14) can lose records around a rebalance — seen in the
broker-outage drill, and reported upstream against real Kafka clusters:

- it drops the records it fetched but has not processed, counting on ``seek_to_committed`` to
  read them again; aiokafka does not move a partition whose committed offset is missing or 0,
  so those records were never read again;
- it acks the prefetched records of the previous generation that it skips, so its commit can
  pass records that no agent processed, and it marks as read a record whose delivery was
  cancelled when the flow stopped.

``Gaps`` guards both agents: it sends a partition with no committed offset back to its start
when Faust seeks to the committed offsets, notes where each partition resumes, and, before an
agent processes a record, checks that it follows the last one (no topic here has transaction
markers or compaction, so offsets are contiguous). What is missing is read straight from the
broker and processed first. The agents skip records they applied already
(``streams.applied``), so a record read twice this way changes nothing.
"""

import asyncio
import logging
import time
from typing import AsyncIterator, Mapping

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.types import TP

from streams.topics import Delivered

log = logging.getLogger(__name__)

READ_PATIENCE = 30.0  # seconds a gap read may make no progress before the agent goes on without it


class Gaps:
    def __init__(self, app: faust.App, bootstrap: str, topics: set[str]) -> None:
        self._app, self._bootstrap, self._topics = app, bootstrap, topics
        self._next: dict[tuple[str, int], int] = {}  # (topic, partition) → the offset to be delivered next
        self._reading = asyncio.Lock()
        self._rewind_uncommitted()

    def _rewind_uncommitted(self) -> None:
        consumer = self._app.consumer
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed_or_beginning() -> Mapping[TP, int]:
            committed = await seek_to_committed()
            mine = {tp: max(offset or 0, 0) for tp, offset in committed.items() if tp.topic in self._topics}
            fresh = {tp: 0 for tp, offset in mine.items() if offset == 0}
            if fresh:
                await consumer.seek_wait(fresh)
            self._next.update(((tp.topic, tp.partition), offset) for tp, offset in mine.items())
            return committed

        consumer.seek_to_committed = seek_to_committed_or_beginning  # type: ignore[method-assign]

    async def delivered(self, stream: faust.StreamT) -> AsyncIterator[Delivered]:
        """The stream's records in offset order, each partition's skipped ones filled in."""
        async for event in stream.events():
            message = event.message
            for record in await self._missing(message.topic, message.partition, message.offset):
                yield record
            yield message

    async def _missing(self, topic: str, partition: int, offset: int) -> list[ConsumerRecord]:
        key = (topic, partition)
        expected = self._next.get(key)
        self._next[key] = offset + 1
        if expected is None or offset <= expected:
            return []
        log.warning("%s:%d: the consumer skipped offsets %d..%d; reading them from the broker",
                    topic, partition, expected, offset - 1)
        return await self._read(TopicPartition(topic, partition), expected, offset)

    async def _read(self, tp: TopicPartition, start: int, end: int) -> list[ConsumerRecord]:
        async with self._reading:
            reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None,
                                      enable_auto_commit=False, auto_offset_reset="earliest")
            await reader.start()
            try:
                reader.assign([tp])
                reader.seek(tp, start)
                records: list[ConsumerRecord] = []
                progress = time.monotonic()
                while await reader.position(tp) < end:
                    batch = (await reader.getmany(tp, timeout_ms=1000)).get(tp, [])
                    records += [r for r in batch if r.offset < end]
                    if batch:
                        progress = time.monotonic()
                    elif time.monotonic() - progress > READ_PATIENCE:
                        log.error("%s:%d: could not read offsets from %d (up to %d); going on without them",
                                  tp.topic, tp.partition, start, end - 1)
                        break
                return records
            finally:
                await reader.stop()
