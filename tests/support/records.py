"""Publishing records straight to a stack's topics, for tests that drive the agents directly."""

from aiokafka import AIOKafkaProducer

from memstream.settings import Settings
from streams.events import Record, encode


async def publish(settings: Settings, topic: str, *records: Record) -> None:
    """Send ``records`` to ``topic`` keyed by their user, acknowledged by the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, encode(record), key=record.key)
    finally:
        await producer.stop()
