"""Publishing records straight to a stack's topics, for tests that drive the agents directly."""

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from memstream.settings import Settings
from streams.project_tokens import token_sha256
from streams.records import COMMANDS, FACTS, PROJECT_RECORDS, Codec, ProjectCreated, Record, encode


async def publish(settings: Settings, topic: str, *records: Record) -> None:
    """Send ``records`` to ``topic`` keyed by their user, acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, encode(record), key=record.key)
    finally:
        await producer.stop()


async def publish_raw(settings: Settings, topic: str, key: str, value: bytes) -> None:
    """Send ``value`` as it is (not a record) to ``topic`` under ``key``, acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def messages_in(settings: Settings, tps: Iterable[TopicPartition]) -> list[ConsumerRecord]:
    """Every message of the partitions ``tps``, as stored (not decoded), partition by partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = sorted(set(tps))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        messages: list[ConsumerRecord] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages += batch
        return messages
    finally:
        await consumer.stop()


async def ensure_project(settings: Settings, project_id: str) -> None:
    """Create ``project_id`` (once per topic), so records naming it are accepted."""
    key = (settings.topic_projects, project_id)
    if project_id != settings.default_project and key not in _created:
        record = ProjectCreated(project_id=project_id, token_sha256=token_sha256(f"sk-{project_id}-test"))
        await publish(settings, settings.topic_projects, record)
        _created.add(key)


_created: set[tuple[str, str]] = set()


def codec_of(settings: Settings, topic: str) -> Codec:
    return {settings.topic_ingest: COMMANDS, settings.topic_memory: FACTS, settings.topic_projects: PROJECT_RECORDS}[
        topic
    ]


async def records_in_log(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` (as committed), decoded, partition by partition."""
    codec = codec_of(settings, topic)
    return [codec.decode(message.value) for message in await messages_in(settings, partitions(settings, topic))]


async def parked_messages(settings: Settings) -> list[ConsumerRecord]:
    """Every message on the dead-letter topic so far."""
    return await messages_in(settings, partitions(settings, settings.topic_dead_letter))


def partitions(settings: Settings, *topics: str) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]


async def group_offsets(
    settings: Settings, group: str, *topics: str, rewind: bool = False
) -> dict[TopicPartition, int | None]:
    """``group``'s committed offsets on ``topics``; with ``rewind``, first commit 0 for each (the
    group must have no live member)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = partitions(settings, *topics)
        if rewind:
            consumer.assign(tps)
            await consumer.commit(dict.fromkeys(tps, 0))
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def log_ends(settings: Settings, *topics: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions(settings, *topics))
    finally:
        await consumer.stop()


async def consumed_all(settings: Settings, group: str, topic: str) -> bool:
    """Whether ``group`` has committed past every record ``topic`` holds (transaction markers take
    offsets too, so the end offsets are not the mark)."""
    tps = partitions(settings, topic)
    last = {tp: -1 for tp in tps}
    for message in await messages_in(settings, tps):
        last[TopicPartition(message.topic, message.partition)] = message.offset
    committed = await group_offsets(settings, group, topic)
    return all(last[tp] < 0 or (committed[tp] or 0) > last[tp] for tp in tps)


async def projected(settings: Settings) -> bool:
    """Whether the projection writer has committed past every fact the memory topic holds."""
    return await consumed_all(settings, settings.projection_group, settings.topic_memory)
