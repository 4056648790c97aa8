"""Publishing records straight to a stack's topics, for tests that drive the agents directly."""

from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from memstream.settings import Settings
from streams.events import Record, decode, encode


async def publish(settings: Settings, topic: str, *records: Record) -> None:
    """Send ``records`` to ``topic`` keyed by their user, acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, encode(record), key=record.key)
    finally:
        await producer.stop()


async def messages_in(settings: Settings, tps: Iterable[TopicPartition]) -> list[ConsumerRecord]:
    """Every message of the partitions ``tps``, as stored (not decoded), partition by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
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


async def records_in_log(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic``, decoded, partition by partition."""
    return [decode(message.value) for message in await messages_in(settings, partitions(settings, topic))]


def partitions(settings: Settings, *topics: str) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]


async def group_offsets(settings: Settings, group: str, *topics: str, rewind: bool = False) -> dict[TopicPartition, int | None]:
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
