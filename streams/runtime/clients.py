"""Kafka clients: the group consumer both stages use, and closing a client that may never finish closing.

aiokafka's ``stop()`` first delivers what a producer still holds; with the broker away that
waits for answers that will not come. A client given up on (a failed partition, a retired API
producer) is closed in the background with a deadline, and its successor fences it meanwhile.
"""

import asyncio
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from memstream.settings import Settings

log = logging.getLogger(__name__)


def group_consumer(settings: Settings, group_id: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A member of ``group_id`` that reads only committed records and commits its positions itself
    (in a transaction, or once what it read is written)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=int(settings.broker_session_timeout * 1000),
        rebalance_timeout_ms=int(settings.broker_rebalance_timeout * 1000),
        heartbeat_interval_ms=int(settings.broker_heartbeat_interval * 1000),
        **options,
    )


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def stop_within(client: Stoppable, timeout: float, what: str) -> None:
    """``client.stop()``, given up after ``timeout`` seconds."""
    try:
        await asyncio.wait_for(client.stop(), timeout)
    except Exception as exc:  # noqa: BLE001 - a fenced, broken or stuck client is let go either way
        log.info("%s closed with %r", what, exc)


class Closer:
    """Closes clients in the background, each within a deadline; ``wait`` for them at shutdown."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._closing: set[asyncio.Task[None]] = set()

    def close(self, client: Stoppable, what: str) -> None:
        task = asyncio.create_task(stop_within(client, self._timeout, what), name=f"close {what}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def wait(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
