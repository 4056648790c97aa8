"""The projection writer: consumes the Memstream topics (all but dead letters) and writes ClickHouse in batches.

Offsets are committed only after a batch is written, and every write is idempotent
(deterministic ids, ReplacingMergeTree), so a crash between the two replays a batch harmlessly.
While ClickHouse is unreachable the writer keeps its position and retries with backoff, from
the write that failed: the inserts of a batch that went through are not sent twice (only one
whose answer was lost on the way can be, which FINAL reads and merges absorb).
"""

import asyncio
import functools
import logging
from collections import defaultdict
from typing import Any, Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from memstream.settings import Settings
from projections.rows import COLUMNS, Insert, Op, Statement, ops_for
from projections.store import Store
from streams.events import decode

log = logging.getLogger(__name__)


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
            steps.append(functools.partial(store.command, op.sql.replace("{db}", store.database), op.params))
    flush_pending()
    return steps


async def apply_ops(store: Store, ops: list[Op]) -> None:
    """Run ``ops`` in order, sending consecutive inserts as one insert per table."""
    for write in writes(store, ops):
        await write()


class ProjectionWriter:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._consumer = AIOKafkaConsumer(
            settings.topic_ingest,
            settings.topic_flushes,
            settings.topic_memory,
            settings.topic_projects,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.projection_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(settings.broker_session_timeout * 1000),
            rebalance_timeout_ms=int(settings.broker_rebalance_timeout * 1000),
            heartbeat_interval_ms=1000,
        )
        self._task: asyncio.Task[None] | None = None
        self.records_written = 0
        # What this writer wrote lately, by partition: offset → hash of the value. After a rejoin the
        # consumer reads again from the committed offsets — a batch whose commit failed (a restarted
        # broker forgot the group), or one fetched again because a rebalance reset the position while
        # it was being written — and those records are skipped rather than written twice (unless the
        # log holds other records there now). Marks below the commit before last are dropped.
        self._written: dict[TopicPartition, dict[int, int]] = defaultdict(dict)
        self._committed: dict[TopicPartition, int] = {}  # each partition's last offset committed

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="projection-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(
                timeout_ms=self._settings.projection_batch_wait_ms, max_records=self._settings.projection_batch_size
            )
            if not batch:
                continue
            ops: list[Op] = []
            count = 0
            for tp, messages in batch.items():
                written = self._written.get(tp, {})
                for message in messages:
                    if written.get(message.offset) == hash(message.value):
                        continue
                    count += 1
                    try:
                        ops.extend(ops_for(decode(message.value)))
                    except ValidationError as exc:
                        log.error("skipping undecodable record at %s:%d:%d: %s",
                                  message.topic, message.partition, message.offset, exc)
            await self._write_until_done(ops)
            self.records_written += count
            for tp, messages in batch.items():
                self._written[tp].update((m.offset, hash(m.value)) for m in messages)
            offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items()}
            try:
                await self._consumer.commit(offsets)
                self._forget_before_last_commit(offsets)
            except KafkaError as exc:
                # E.g. CommitFailedError from a restarted broker that forgot the group: the consumer
                # rejoins and reads from the last committed offsets; what was written is skipped.
                log.warning("projection offsets not committed (%s: %s); will commit after the rejoin",
                            type(exc).__name__, exc)

    def _forget_before_last_commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            previous = self._committed.get(tp, 0)
            self._written[tp] = {o: h for o, h in self._written[tp].items() if o >= previous}
            self._committed[tp] = offset

    async def _write_until_done(self, ops: list[Op]) -> None:
        delay, pending = 0.2, writes(self._store, ops)
        while pending:
            try:
                await pending[0]()
                pending.pop(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any store failure means: keep the offsets, retry
                log.warning("projection write failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
