"""The API's Kafka producer: a request is acknowledged only once the broker has the record, and
answered 503 only once the record can no longer reach the log.

aiokafka's idempotent producer retries a batch until it is delivered, whatever its caller's
timeout ("cancelling the returned future will not stop event from being sent"), so a record a
request gave up on would reach the log once the broker is back: the client, told nothing was
stored, retries and the blob is there twice. So a send that fails or times out retires the
producer that holds it: its sender stops, requests already on the wire finish (a record the
broker took after all is acknowledged), everything it still holds is failed, and the next
request starts a fresh producer. A fresh producer also has a new producer id, which is what it
takes after a fatal error: a broker that lost its idempotence state in a restart answers
``OutOfOrderSequenceNumber``, which ends aiokafka's sender for good.
"""

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from api.envelope import unavailable
from streams.events import Record, encode

log = logging.getLogger(__name__)


class ProducerRetired(KafkaError):
    """The record was still held by a retired producer: it was never sent."""


def fail_held(producer: AIOKafkaProducer, error: KafkaError) -> None:
    """Fail every record ``producer`` still holds. aiokafka 0.14 internals: its own ``fail_all``
    trips over a batch queued again for a retry (its done-callback removes it from the pending
    set it is no longer in) and leaves the batches' drain waiters failed and never retrieved."""
    accumulator = producer._message_accumulator
    held = {*accumulator._pending_batches, *(b for queue in accumulator._batches.values() for b in queue)}
    accumulator._pending_batches.update(held)
    accumulator._batches.clear()
    for batch in held:
        batch.failure(error)
        drained = batch._drain_waiter
        if drained.done() and not drained.cancelled():
            drained.exception()


async def halt(producer: AIOKafkaProducer) -> None:
    """Stop ``producer`` without sending what it still holds (``stop()`` flushes first, which with
    idempotence on and the broker down never ends). Cancelled, aiokafka's sender waits for its
    requests on the wire, so their records end as the broker answered; the rest are failed."""
    sender = producer._sender.sender_task
    if sender is not None and not sender.done():
        sender.cancel()
        await asyncio.wait([sender])
    fail_held(producer, ProducerRetired("the producer holding this record was retired"))
    await producer.stop()


def _retrieve(delivery: asyncio.Future) -> None:
    """Mark a delivery's failure as seen: the request waiting on it may have given up already."""
    if not delivery.cancelled():
        delivery.exception()


class Producer:
    def __init__(self, bootstrap: str, timeout: float) -> None:
        self._bootstrap, self._timeout = bootstrap, timeout
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._halting: dict[AIOKafkaProducer, asyncio.Task[None]] = {}

    async def start(self) -> None:
        await self._current()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        await asyncio.gather(*self._halting.values())

    async def _current(self) -> AIOKafkaProducer:
        """The producer in use; a new one after a retirement."""
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=1,
                    request_timeout_ms=int(self._timeout * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _retire(self, producer: AIOKafkaProducer) -> None:
        """Take ``producer`` out of use and halt it (once, however many requests failed on it)."""
        if self._producer is producer:
            self._producer = None
        if producer not in self._halting:
            self._halting[producer] = asyncio.create_task(halt(producer), name="producer-halt")
            self._halting[producer].add_done_callback(lambda _: self._halting.pop(producer, None))
        await asyncio.shield(self._halting[producer])

    async def send(self, topic: str, record: Record) -> None:
        """Send and wait for acks=all; a failure becomes a 503 (nothing stored) so the client knows to retry."""
        producer: AIOKafkaProducer | None = None
        delivery: asyncio.Future | None = None
        try:
            async with asyncio.timeout(self._timeout):
                producer = await self._current()
                delivery = await producer.send(topic, encode(record), key=record.key)
                delivery.add_done_callback(_retrieve)
                await asyncio.shield(delivery)
            return
        except (KafkaError, TimeoutError) as exc:
            failure: BaseException = exc
        if producer is not None:
            await self._retire(producer)
        if delivery is not None and delivery.done() and not delivery.cancelled() and delivery.exception() is None:
            return  # the broker took it while its producer was being retired
        log.warning("broker did not take %s: %r", type(record).__name__, failure)
        raise unavailable("the event log is unavailable, nothing was stored; retry shortly") from failure
