"""The projection writer: reads the facts (memory topic), project records (projects topic) and dead
letters, as committed, and writes ClickHouse in batches.

    memory, projects, dead-letter ─▶ consumer (group MEMSTREAM_PROJECTION_GROUP, read_committed) ─▶ rows ─▶ ClickHouse
                                                               └─ a record it cannot use ─▶ dead letters

Offsets are committed only after a batch is written, and every write is idempotent (deterministic
ids, ReplacingMergeTree versions from the facts), so a crash between the two writes a batch again
harmlessly: that is the only dedup there is. The writer retries only unavailability (ClickHouse
unreachable: it keeps its position and tries again with backoff, from the write that failed).
A record it cannot use — one that does not decode, or whose rows ClickHouse refuses — goes to
the dead letters with the reason, and the other records of the batch are written.
"""

import asyncio
import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from memstream.settings import Settings
from projections.cluster_schema import mutation_target
from projections.rows import COLUMNS, Insert, Op, Statement, dead_letter_ops, ops_for
from projections.store import Store, StoreUnavailable
from streams.records import FACTS, PROJECT_RECORDS, Codec, Undecodable
from streams.runtime.clients import group_consumer

log = logging.getLogger(__name__)
# Most users one progress record names (~100 KB of keys); a batch that wrote more drops every copy.
MAX_NAMED_USERS = 2000

Write = Callable[[], Awaitable[None]]


def writes(store: Store, ops: list[Op]) -> list[Write]:
    """The store calls that run ``ops`` in order: consecutive inserts as one insert per table, each
    statement on its own."""
    steps: list[Write] = []
    pending: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    def flush_pending() -> None:
        # Task rows go last: a reader that sees a task finished also sees what the task wrote.
        for table in sorted(pending, key=lambda name: name == "tasks"):
            steps.append(functools.partial(store.insert, f"{store.database}.{table}", pending[table], COLUMNS[table]))
        pending.clear()

    for op in ops:
        if isinstance(op, Insert):
            pending[op.table].append(op.row)
        elif isinstance(op, Statement):
            flush_pending()
            target = mutation_target(store.database, op.table, store.cluster)
            steps.append(functools.partial(store.command, op.sql.replace("{table}", target), op.params))
    flush_pending()
    return steps


async def apply_ops(store: Store, ops: list[Op]) -> None:
    """Run ``ops`` in order, sending consecutive inserts as one insert per table."""
    for write in writes(store, ops):
        await write()


Reader = Callable[[ConsumerRecord], list[Op]]


def _decoded(codec: Codec) -> Reader:
    return lambda message: ops_for(codec.decode(message.value))


def _parked(message: ConsumerRecord) -> list[Op]:
    at = datetime.fromtimestamp(message.timestamp / 1000, UTC)
    return dead_letter_ops(
        f"{message.topic}:{message.partition}:{message.offset}",
        message.key,
        message.value,
        dict(message.headers or ()),
        at,
        message.offset,
    )


def readers(settings: Settings) -> dict[str, Reader]:
    """How the writer turns each topic it consumes into writes (the same for a replay)."""
    return {
        settings.topic_memory: _decoded(FACTS),
        settings.topic_projects: _decoded(PROJECT_RECORDS),
        settings.topic_dead_letter: _parked,
    }


@dataclass(frozen=True)
class Rejected:
    message: ConsumerRecord
    reason: str


class ProjectionWriter:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._readers = readers(settings)
        self._consumer = group_consumer(settings, settings.projection_group, *self._readers)
        # Dead letters, and how far the writer is (the progress topic).
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        self._task: asyncio.Task[None] | None = None
        self._unnamed: set[TopicPartition] = set()  # partitions whose last progress may not have been published
        self.records_written = 0
        self._failing_since: float | None = None
        self._last_failure = ""
        self.stopped_with: BaseException | None = None

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="projection-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
        await self._producer.stop()

    def health(self) -> str | None:
        if self.stopped_with is not None:
            return f"the projection writer stopped: {type(self.stopped_with).__name__}: {self.stopped_with}"
        if self._task is None or self._task.done():
            return "the projection writer is not running"
        if self._failing_since is not None and time.monotonic() - self._failing_since >= self._settings.health_grace:
            return f"the projection writer cannot write ClickHouse: {self._last_failure}"
        return None

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._consumer.getmany(
                    timeout_ms=self._settings.projection_batch_wait_ms, max_records=self._settings.projection_batch_size
                )
                if batch:
                    await self._write_batch(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported by health
            self.stopped_with = exc
            log.exception("the projection writer stopped")

    async def _write_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        decoded: list[tuple[ConsumerRecord, list[Op]]] = []
        rejected: list[Rejected] = []
        for messages in batch.values():
            for message in messages:
                try:
                    decoded.append((message, self._readers[message.topic](message)))
                except Undecodable as exc:
                    rejected.append(Rejected(message, str(exc)))
        try:
            await self._write_until_done([op for _, ops in decoded for op in ops])
        except StoreRefused:
            rejected += await self._write_one_by_one(decoded)
        for bad in rejected:
            await self._park(bad)
        self.records_written += sum(len(messages) for messages in batch.values())
        # the position (not the last offset + 1) passes the transaction markers after the last record
        offsets = {
            tp: max(messages[-1].offset + 1, await self._consumer.position(tp)) for tp, messages in batch.items()
        }
        await self._publish_progress(batch, offsets)
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The group is rebalancing (or the broker restarted): the batch is read again from the
            # committed offsets and written again, which changes nothing.
            log.warning(
                "projection offsets not committed (%s: %s); the batch will be written again", type(exc).__name__, exc
            )

    async def _publish_progress(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], offsets: dict[TopicPartition, int]
    ) -> None:
        """Say how far ClickHouse now holds each partition of the batch (and, for a memory partition,
        which ingest position the owner had passed there): the API's read-your-writes waits on it."""
        sent = []
        for tp, messages in batch.items():
            progress: dict[str, object] = {"topic": tp.topic, "partition": tp.partition, "offset": offsets[tp]}
            if tp.topic == self._settings.topic_memory:
                progress.update(self._changed_users(tp, messages))
            marker = next(
                (
                    m
                    for m in reversed(messages)
                    if tp.topic == self._settings.topic_memory and b'"kind":"owner_progress"' in (m.value or b"")
                ),
                None,
            )
            if marker is not None:
                progress["ingest_topic"] = self._settings.topic_ingest
                progress["ingest_offset"] = json.loads(marker.value)["ingest_offset"]
            key = f"{tp.topic}:{tp.partition}".encode()
            sent.append(
                await self._producer.send(self._settings.topic_progress, json.dumps(progress).encode(), key=key)
            )
        try:
            await asyncio.gather(*sent)
        except KafkaError as exc:  # the rows are written: the next batch says it again
            self._unnamed.update(batch)
            log.warning("projection progress not published (%s: %s)", type(exc).__name__, exc)
        else:
            self._unnamed.difference_update(batch)

    def _changed_users(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> dict[str, object]:
        """The users (record keys ``project:user``) a memory batch wrote, for the API's read caches;
        ``changed_all`` when there are too many to name or an earlier publish may have been lost."""
        keys = {m.key.decode(errors="replace") for m in messages if m.key}
        if tp in self._unnamed or len(keys) > MAX_NAMED_USERS:
            return {"changed_all": True}
        return {"changed": sorted(keys)}

    async def _write_one_by_one(self, decoded: list[tuple[ConsumerRecord, list[Op]]]) -> list[Rejected]:
        """ClickHouse refused a batch: write its records one at a time, and return those it refuses."""
        refused = []
        for message, ops in decoded:
            try:
                await self._write_until_done(ops)
            except StoreRefused as exc:
                refused.append(Rejected(message, f"ClickHouse refused its rows: {exc}"))
        return refused

    async def _park(self, rejected: Rejected) -> None:
        message = rejected.message
        if message.topic == self._settings.topic_dead_letter:  # never park a dead letter again: say so
            log.error(
                "projection writer: dead letter %s:%d:%d cannot be written: %s",
                message.topic,
                message.partition,
                message.offset,
                rejected.reason,
            )
            return
        source = f"{message.topic}:{message.partition}:{message.offset}"
        log.error("projection writer: dead letter %s: %s", source, rejected.reason)
        headers = [("error", rejected.reason.encode()), ("source", source.encode())]
        await self._producer.send_and_wait(
            self._settings.topic_dead_letter, message.value, key=message.key, headers=headers
        )

    async def _write_until_done(self, ops: list[Op]) -> None:
        """Write ``ops``; wait out unavailability; raise ``StoreRefused`` if ClickHouse refuses one."""
        delay, pending = 0.2, writes(self._store, ops)
        while pending:
            try:
                await pending[0]()
                pending.pop(0)
                self._failing_since = None
            except StoreUnavailable as exc:
                self._failing_since = self._failing_since or time.monotonic()
                self._last_failure = str(exc)
                log.warning("ClickHouse unavailable (%s); retrying the write in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - ClickHouse answered, and said no
                raise StoreRefused(f"{type(exc).__name__}: {exc}") from exc


class StoreRefused(Exception):
    """ClickHouse answered a write with an error (the data, not the connection)."""
