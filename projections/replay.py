"""Rebuilding the read models: replay the topics from the beginning into a database.

Every projection is a pure function of its record (``projections.rows.ops_for``) and every
write is idempotent, so replaying the facts and project records (what the projection writer
reads, as committed) into an empty, migrated database yields the tables the writer built live.
What replay must keep is each partition's order: a user's facts are in one partition, and a few
writes are statements over what is already there (``UserForgotten`` erases the rows stated
before it). Partitions are merged one record at a time, oldest log timestamp first, while the
batches of writes stay as large as the writer's.

Replay stops at the end offsets taken when it starts, so it terminates beside a running
system; whatever is appended later is the live writer's business. The offsets it read between
are in its stats (``begins``, ``ends``), so a caller can check the log still starts at its
first record before writing anything (``prepare``) and hand the ends to a consumer group after.
"""

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from memstream.settings import Settings
from projections.rows import Op
from projections.store import Store
from projections.writer import apply_ops, readers
from streams.records import Undecodable

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    total: int = 0  # offsets the topics spanned when the replay started (records and transaction markers)
    done: int = 0  # offsets passed so far (equals ``total`` at the end)
    read: int = 0  # records read
    skipped: int = 0  # undecodable records, logged and passed over (the writer parked them)
    by_topic: dict[str, int] = field(default_factory=dict)
    begins: dict[TopicPartition, int] = field(default_factory=dict)  # first offset each partition still holds
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # where the replay stops


Progress = Callable[[ReplayStats], None]
Prepare = Callable[[ReplayStats], Awaitable[None]]


def replayed_topics(settings: Settings) -> list[str]:
    """What the projection writer consumes, in the order that breaks timestamp ties."""
    return list(readers(settings))


async def replay(
    settings: Settings,
    store: Store,
    progress: Progress | None = None,
    batch_size: int | None = None,
    prepare: Prepare | None = None,
) -> ReplayStats:
    """Replay every record the topics hold now into ``store``'s database, which must be migrated
    (and should be empty) by the first write; ``prepare`` is awaited once the bounds are known,
    before anything is written (raising there aborts the replay); ``progress`` is called after
    each batch written and at the end."""
    topics = replayed_topics(settings)
    reading = readers(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata of every topic
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begins[tp])
        stats = ReplayStats(
            total=sum(ends[tp] - begins[tp] for tp in tps), by_topic=dict.fromkeys(topics, 0), begins=begins, ends=ends
        )
        if prepare:
            await prepare(stats)
        merge = _Merge(consumer, {tp: ends[tp] for tp in tps if ends[tp] > begins[tp]}, topics)
        ops: list[Op] = []
        pending = 0
        passed = dict(begins)
        async for message in merge:
            stats.done += message.offset + 1 - passed[TopicPartition(message.topic, message.partition)]
            passed[TopicPartition(message.topic, message.partition)] = message.offset + 1
            stats.read += 1
            stats.by_topic[message.topic] += 1
            try:
                ops.extend(reading[message.topic](message))
            except Undecodable as exc:
                stats.skipped += 1
                log.error(
                    "skipping undecodable record at %s:%d:%d: %s", message.topic, message.partition, message.offset, exc
                )
            pending += 1
            if pending >= (batch_size or settings.projection_batch_size):
                await apply_ops(store, ops)
                ops, pending = [], 0
                if progress:
                    progress(stats)
        await apply_ops(store, ops)
        stats.done = stats.total
        if progress:
            progress(stats)
        return stats
    finally:
        await consumer.stop()


class _Merge:
    """The assigned partitions' records up to ``ends``, merged: each partition in offset order,
    the partitions by (log timestamp, topic rank, partition, offset) of their next record. A record
    is released only when every unfinished partition has its next record at hand."""

    def __init__(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], topics: list[str]) -> None:
        self._consumer = consumer
        self._ends = ends
        self._rank = {t: i for i, t in enumerate(topics)}
        self._unfetched = set(ends)  # partitions whose fetch position is still before their end
        self._heads: dict[TopicPartition, deque[ConsumerRecord]] = {tp: deque() for tp in ends}

    def __aiter__(self) -> "_Merge":
        return self

    async def __anext__(self) -> ConsumerRecord:
        while any(not self._heads[tp] for tp in self._unfetched):
            await self._fetch()
        ready = [queue for queue in self._heads.values() if queue]
        if not ready:
            raise StopAsyncIteration
        queue = min(ready, key=lambda q: self._order(q[0]))
        return queue.popleft()

    def _order(self, m: ConsumerRecord) -> tuple[int, int, int, int]:
        return m.timestamp, self._rank[m.topic], m.partition, m.offset

    async def _fetch(self) -> None:
        empty = [tp for tp in self._unfetched if not self._heads[tp]]
        batches = await self._consumer.getmany(*empty, timeout_ms=1000)
        for tp, messages in batches.items():
            self._heads[tp].extend(m for m in messages if m.offset < self._ends[tp])
        for tp in empty:
            if await self._consumer.position(tp) >= self._ends[tp]:
                self._unfetched.discard(tp)
