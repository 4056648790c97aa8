"""Projection writer: rows per second into ClickHouse from a backlog of memory events.

    this process ──produce N records──▶ memstream.memory ──▶ ProjectionWriter (this process) ──▶ chDB

The backlog is what the owner states, flush after flush: BlobStored, two ProfileSlotChanged,
EventRecorded, UsageRecorded and TaskFinished (9 rows over 6 tables per 6 records), for users
spread over every partition. It is produced first; then a ``ProjectionWriter`` with the product's
batch settings drains it and is timed from its start to its last commit. Two in-run baselines
bound it: reading the same backlog with a bare aiokafka consumer (the broker's ceiling), and
``apply_ops`` writing the already decoded rows into a second database (ClickHouse's ceiling).
"""

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from memstream.settings import Settings
from projections.rows import Insert, Op, ops_for
from projections.schema import migrate
from projections.store import DatabaseView, Store, open_store
from projections.writer import ProjectionWriter, apply_ops
from scripts.bench import harness
from scripts.bench.harness import Table, ratio
from scripts.bench.load import user_ids
from scripts.broker import LocalBroker, free_port
from streams.records import (
    FACTS,
    BlobStored,
    BlobType,
    EventData,
    EventRecorded,
    FlushOutcome,
    ProfileDelta,
    ProfileSlotChanged,
    Record,
    TaskFinished,
    UsageRecorded,
    derived_id,
    encode,
    utc_now,
)
from streams.topics import ensure_topics

TARGET_ROWS_PER_S = 50_000.0
RECORDS_PER_FLUSH = 6
USERS = 10_000


@dataclass(frozen=True)
class Sizes:
    records: int


FULL = Sizes(1_000_000)
QUICK = Sizes(6_000)


def flush_records(flush: int, user: str) -> list[Record]:
    """What one extraction of ``user``'s buffer puts on the memory topic."""
    p, f = "default", derived_id("bench-flush", str(flush))
    blob, task = derived_id(f, "blob"), derived_id(f, "task")
    slots = [("basic_info", "name", f"Alice {flush}"), ("interest", "music", "jazz, cello, Sunday concerts")]
    changes = [
        ProfileSlotChanged(
            project_id=p,
            user_id=user,
            record_id=derived_id(f, "slot", str(i)),
            seq=2 + i,
            profile_id=derived_id(user, topic, sub),
            op="add",
            topic=topic,
            sub_topic=sub,
            content=content,
            source_id=f,
        )
        for i, (topic, sub, content) in enumerate(slots)
    ]
    data = EventData(
        profile_delta=[ProfileDelta(content=c, attributes={"topic": t, "sub_topic": s}) for t, s, c in slots],
        event_tip="Alice talked about the cello and a jazz concert on Sunday.",
    )
    return [
        BlobStored(
            project_id=p,
            user_id=user,
            record_id=derived_id(f, "stored"),
            seq=1,
            blob_id=blob,
            task_id=task,
            blob_type=BlobType.chat,
            blob_data={"messages": [{"role": "user", "content": "I play the cello."}]},
            created_at=utc_now(),
            flush_id=f,
        ),
        *changes,
        EventRecorded(
            project_id=p,
            user_id=user,
            record_id=derived_id(f, "event"),
            seq=4,
            event_id=derived_id(f, "event"),
            flush_id=f,
            event_data=data,
        ),
        UsageRecorded(
            project_id=p,
            user_id=user,
            record_id=derived_id(f, "usage"),
            seq=5,
            source_id=f,
            model="bench",
            calls=1,
            input_tokens=900,
            output_tokens=120,
        ),
        TaskFinished(
            project_id=p,
            user_id=user,
            record_id=derived_id(f, "finished"),
            seq=6,
            flush_id=f,
            blob_type=BlobType.chat,
            task_ids=[task],
            blob_ids=[blob],
            status="completed",
            outcomes=[FlushOutcome(event_id=derived_id(f, "event"), added=[c.profile_id for c in changes])],
        ),
    ]


def backlog(records: int) -> Iterator[Record]:
    """``records`` records (a multiple of RECORDS_PER_FLUSH), flush after flush, round-robin over the users."""
    users = user_ids(USERS)
    for flush in range(records // RECORDS_PER_FLUSH):
        yield from flush_records(flush, users[flush % USERS])


async def produce(settings: Settings, records: int) -> float:
    """Put the backlog on the memory topic; returns the seconds it took (records built meanwhile)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    clock = time.monotonic()
    try:
        pending = []
        for record in backlog(records):
            pending.append(await producer.send(settings.topic_memory, encode(record), key=record.key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - clock


async def consume_only(settings: Settings, records: int) -> float:
    """Seconds a bare consumer takes to read the backlog (no decoding): the broker's side of the writer."""
    consumer = AIOKafkaConsumer(
        settings.topic_memory,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    clock = time.monotonic()
    try:
        seen = 0
        while seen < records:
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.projection_batch_size)
            seen += sum(len(messages) for messages in batch.values())
    finally:
        await consumer.stop()
    return time.monotonic() - clock


async def drain(settings: Settings, store: Store, records: int) -> float:
    """Seconds from starting a ProjectionWriter to its having written and committed the whole backlog."""
    writer = ProjectionWriter(settings, store)
    clock = time.monotonic()
    await writer.start()
    try:
        while writer.records_written < records:  # noqa: ASYNC110 - polls a counter the writer bumps; no event to wait on
            await asyncio.sleep(0.05)
        return time.monotonic() - clock
    finally:
        await writer.stop()


async def insert_only(store: Store, records: int, batch: int) -> tuple[int, float]:
    """Rows in the backlog's writes, and seconds for ``apply_ops`` alone, batch by batch, into a fresh database: ClickHouse's side."""
    ceiling = DatabaseView(store, f"{store.database}_ceiling")
    await migrate(ceiling)
    ops: list[Op] = [op for record in backlog(records) for op in ops_for(FACTS.decode(encode(record)))]
    per_batch = len(ops) * batch // records
    clock = time.monotonic()
    for start in range(0, len(ops), per_batch):
        await apply_ops(ceiling, ops[start : start + per_batch])
    return sum(isinstance(op, Insert) for op in ops), time.monotonic() - clock


async def run(args: argparse.Namespace) -> dict[str, Any]:
    records = (QUICK if args.quick else FULL).records // RECORDS_PER_FLUSH * RECORDS_PER_FLUSH
    with tempfile.TemporaryDirectory(prefix="memstream-bench-writer-") as tmp:
        broker = LocalBroker(Path(tmp) / "broker", free_port())
        await asyncio.to_thread(broker.start)
        store = await open_store(f"chdb://{Path(tmp) / 'clickhouse'}", "memstream")
        try:
            settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=4)
            await ensure_topics(settings)
            await migrate(store)
            produced_s = await produce(settings, records)
            consumed_s = await consume_only(settings, records)
            drained_s = await drain(settings, store, records)
            rows, ceiling_s = await insert_only(store, records, settings.projection_batch_size)
        finally:
            await store.close()
            await asyncio.to_thread(broker.stop)
    writer_rate, ceiling_rate = rows / drained_s, rows / ceiling_s
    result = {
        "records": records,
        "rows": rows,
        "produce_s": round(produced_s, 2),
        "writer_s": round(drained_s, 2),
        "writer_rows_per_s": round(writer_rate),
        "writer_records_per_s": round(records / drained_s),
        "consume_only_records_per_s": round(records / consumed_s),
        "insert_only_rows_per_s": round(ceiling_rate),
        "writer_over_insert_only": ratio(writer_rate, ceiling_rate),
        "writer_over_consume_only": ratio(records / drained_s, records / consumed_s),
        "batch_size": settings.projection_batch_size,
        "batch_wait_ms": settings.projection_batch_wait_ms,
    }
    target = {
        "target": TARGET_ROWS_PER_S,
        "measured": result["writer_rows_per_s"],
        "met": writer_rate >= TARGET_ROWS_PER_S,
    }
    tables = [
        Table(
            f"Projection writer draining {records:,} memory records (batch {result['batch_size']}, wait {result['batch_wait_ms']} ms)",
            [
                "records",
                "rows",
                "writer_s",
                "writer_rows_per_s",
                "writer_records_per_s",
                "consume_only_records_per_s",
                "insert_only_rows_per_s",
                "writer_over_insert_only",
                "writer_over_consume_only",
            ],
            [result],
        ),
        Table("Target", ["target", "measured", "met"], [target]),
    ]
    return {**result, "target_rows_per_s": target, "tables": tables}


def cli() -> None:
    harness.main("writer", run, harness.parser("writer", __doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    cli()
