"""Making sure the agents see every record of their partitions, whatever Faust does on a rebalance.

faust-streaming 0.15.3 (with aiokafka 0.14) can lose records around a rebalance — seen in the
broker-outage drill, and reported upstream against real Kafka clusters:

- it drops the records it fetched but has not processed, counting on ``seek_to_committed`` to
  read them again; aiokafka does not move a partition whose committed offset is missing or 0,
  so those records were never read again;
- it acks the records it skips while its flow is stopped (a rebalance, a shutdown) or that were
  fetched by the previous generation, and its commit takes the highest run of acked offsets
  without checking that it starts right at the committed one (a gap of one record, or any gap
  when nothing was committed yet, is committed over): records no agent processed are committed,
  and after a restart they are never read;
- it marks as read a record whose delivery it cancelled because the flow stopped; when that was
  the last record of its partition, nothing later shows the gap.

``Gaps`` guards both agents: when Faust seeks to the committed offsets, it sends each partition
to where its agent was (``seek_to_resume``), and, before an agent processes a record, drops one
the agent got already and checks that it follows the last one (no topic here has transaction
markers or compaction, so offsets are contiguous). What is missing is read straight from the
broker and processed first. What Faust commits for these topics is the offset after the last
record the agent finished, nothing beyond. And when an agent has waited ``STALL`` seconds while
one of its partitions holds records after the last one it got, Faust is sent back there.

Where each agent was is known only to its process: after a restart, the records after the last
commit are read again. The extract agent skips the flushes it applied (``streams.applied``).
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
STALL = 5.0  # seconds an agent may wait while its partition holds records it did not get


class Gaps:
    def __init__(self, app: faust.App, bootstrap: str, topics: set[str]) -> None:
        self._app, self._bootstrap, self._topics = app, bootstrap, topics
        self._next: dict[tuple[str, int], int] = {}  # (topic, partition) → the offset to be delivered next
        self._done: dict[tuple[str, int], int] = {}  # (topic, partition) → the offset after the last one processed
        self._generation: dict[tuple[str, int], int] = {}  # (topic, partition) → consumer generation of the last one got
        self._idle_since: dict[str, float] = {}  # topic → since when its agent waits for a record
        self._reading = asyncio.Lock()
        self._resume_where_the_agent_was()
        self._commit_only_processed()
        app.timer(STALL / 2, name="gaps.resume_stalled")(self._resume_stalled)

    def _resume_where_the_agent_was(self) -> None:
        consumer = self._app.consumer
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_resume() -> Mapping[TP, int]:
            """Each partition resumes at the committed offset (at the start when nothing was
            committed), or after the last record its agent got in this consumer generation: Faust
            delivers records before it seeks back to the commit, while one is being processed. A
            record got in an earlier generation does not count: a broker that lost records it had
            acknowledged (the local one, stopped) gives their offsets to new records."""
            committed = await seek_to_committed()
            generation = self._app.consumer_generation_id
            resume: dict[TP, int] = {}
            for tp, offset in committed.items():
                if tp.topic not in self._topics:
                    continue
                key, start = (tp.topic, tp.partition), offset or 0
                this_generation = self._generation.get(key) == generation
                resume[tp] = self._next[key] = max(start, self._next[key]) if this_generation else start
                self._done[key] = max(start, self._done.get(key, 0)) if this_generation else start
            if resume:
                await consumer.seek_wait(resume)
            return committed

        consumer.seek_to_committed = seek_to_resume  # type: ignore[method-assign]

    def _commit_only_processed(self) -> None:
        consumer = self._app.consumer
        new_offset = consumer._new_offset

        def processed_offset(tp: TP) -> int | None:
            offset = new_offset(tp)  # still called: it keeps Faust's lists of acked offsets short
            return self._done.get((tp.topic, tp.partition)) if tp.topic in self._topics else offset

        consumer._new_offset = processed_offset  # type: ignore[method-assign]

    async def _resume_stalled(self) -> None:
        """Send Faust back to the first record an idle agent did not get (Faust lost its delivery)."""
        app, now = self._app, time.monotonic()
        if app.rebalancing or not app.flow_control.is_active():
            return
        for tp in app.consumer.assignment():
            expected, end = self._next.get((tp.topic, tp.partition)), app.consumer.highwater(tp)
            idle = now - self._idle_since.get(tp.topic, now)
            if expected is not None and end is not None and expected < end and idle >= STALL:
                log.warning("%s:%d: offsets %d..%d were not delivered; reading them again",
                            tp.topic, tp.partition, expected, end - 1)
                await app.consumer.seek(tp, expected)

    async def delivered(self, stream: faust.StreamT) -> AsyncIterator[Delivered]:
        """The stream's records in offset order, each partition's skipped ones filled in."""
        topics = stream.channel.topics
        self._idle_since.update(dict.fromkeys(topics, time.monotonic()))
        async for event in stream.events():
            message = event.message
            key = (message.topic, message.partition)
            expected = self._next.get(key)
            if expected is not None and message.offset < expected:
                continue  # the agent got it already: Faust read it again after a seek
            for topic in topics:
                self._idle_since.pop(topic, None)
            for record in await self._missing(message.topic, message.partition, message.offset):
                yield record
                self._done[key] = record.offset + 1
            yield message
            self._done[key] = message.offset + 1  # the agent asks for the next one: this one is processed
            self._idle_since.update(dict.fromkeys(topics, time.monotonic()))

    async def _missing(self, topic: str, partition: int, offset: int) -> list[ConsumerRecord]:
        key = (topic, partition)
        expected = self._next.get(key)
        self._next[key] = offset + 1
        self._generation[key] = self._app.consumer_generation_id
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
