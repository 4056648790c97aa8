"""The API's Kafka producer: a request is acknowledged only once the broker has the record."""

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from api.envelope import unavailable
from streams.events import Record, encode

log = logging.getLogger(__name__)


class Producer:
    def __init__(self, bootstrap: str, timeout: float) -> None:
        self._timeout = timeout
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            request_timeout_ms=int(timeout * 1000),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, record: Record) -> None:
        """Send and wait for acks=all; any failure becomes a 503 so the client knows to retry."""
        try:
            await asyncio.wait_for(self._producer.send_and_wait(topic, encode(record), key=record.key), self._timeout)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("broker did not take %s: %r", type(record).__name__, exc)
            raise unavailable("the event log is unavailable, nothing was stored; retry shortly") from exc
