"""The API's Kafka producer: a request is acknowledged only once the broker has committed its
record, and answered 503 only for a record no reader will ever see.

Records go to the log in transactions (group commit: the requests that arrive while one
transaction commits go together in the next), and every reader of the log reads committed
records only. A transaction that cannot commit within ``produce_timeout`` — the broker is away —
is given up: its requests are answered 503, and its records, even those the broker took, are
aborted (by the broker once the transaction times out, or when the next producer with this
process's transactional id starts), so a client that retries after a 503 never finds the first
attempt processed. Nothing is committed before every record of a transaction is acknowledged;
a commit that started and does not finish is waited for (``COMMIT_PATIENCE``) and, if its outcome
stays unknown, answered with a 503 that says the write may be stored.

The transactional id (``<MEMSTREAM_APP_ID>.api.<MEMSTREAM_API_INSTANCE>``) must be unique per
running API process and the same when it restarts: a restarted process then aborts what the
previous run left open.
"""

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from api.envelope import unavailable
from streams.records import Record, encode
from streams.runtime.clients import Closer

log = logging.getLogger(__name__)

MAX_PER_TRANSACTION = 500
COMMIT_PATIENCE = 3  # a commit under way is waited for this many produce timeouts before it is called unknown
RETIRE_TIMEOUT = 30.0  # seconds a given-up producer gets to close before it is left to the broker's fencing


@dataclass
class _Pending:
    topic: str
    record: Record
    answer: "asyncio.Future[RecordMetadata]"


class Producer:
    def __init__(self, bootstrap: str, transactional_id: str, timeout: float) -> None:
        self._bootstrap, self._transactional_id, self._timeout = bootstrap, transactional_id, timeout
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._closer = Closer(RETIRE_TIMEOUT)

    async def start(self) -> None:
        self._producer = await self._new_producer()
        self._loop = asyncio.create_task(self._run(), name="api-producer")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        self._fail(self._pending, unavailable("the API is stopping; nothing was stored, retry"))
        if self._producer is not None:
            self._closer.close(self._producer, "the API producer")
        await self._closer.wait()

    async def send(self, topic: str, record: Record) -> RecordMetadata:
        """Commit ``record`` to ``topic`` keyed by its user; where it landed. 503 when it will not be."""
        answer: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(topic, record, answer))
        self._wake.set()
        return await answer

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=self._transactional_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            request_timeout_ms=int(self._timeout * 1000),
            transaction_timeout_ms=max(int(self._timeout * 3000), 10_000),
            max_request_size=1_100_000,
        )
        try:
            async with asyncio.timeout(self._timeout):
                await producer.start()  # fences an older producer of this id and aborts what it left open
        except BaseException:
            self._closer.close(producer, "an API producer that did not start")
            raise
        return producer

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_PER_TRANSACTION], self._pending[MAX_PER_TRANSACTION:]
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        """One transaction for ``batch``. Until every record is acknowledged nothing is committed, so
        giving up then stores nothing. A commit that does not finish in time is waited for a while
        more: only its outcome says whether the records are in."""
        try:
            async with asyncio.timeout(self._timeout):
                if self._producer is None:
                    self._producer = await self._new_producer()
                producer = self._producer
                await producer.begin_transaction()
                sent = [await producer.send(p.topic, encode(p.record), key=p.record.key) for p in batch]
                landed = await asyncio.gather(*sent)
        except (KafkaError, TimeoutError) as failure:
            self._give_up(batch, failure, "the event log did not take the write; nothing was stored, retry shortly")
            return
        commit = asyncio.ensure_future(producer.commit_transaction())
        try:
            await asyncio.wait_for(asyncio.shield(commit), self._timeout * COMMIT_PATIENCE)
        except (KafkaError, TimeoutError) as failure:
            settled = commit.done() and not commit.cancelled()
            self._give_up(
                batch,
                failure,
                "the event log did not take the write; nothing was stored, retry shortly"
                if settled
                else "the event log did not confirm the write: it may be stored; check before retrying",
            )
            return
        for pending, where in zip(batch, landed):
            if not pending.answer.done():
                pending.answer.set_result(where)

    def _give_up(self, batch: list[_Pending], failure: BaseException, errmsg: str) -> None:
        log.warning("the broker did not take %d records (%r); answered 503", len(batch), failure)
        self._fail(batch, unavailable(errmsg))
        if self._producer is not None:  # its successor fences it, whatever it still holds
            self._closer.close(self._producer, "a retired API producer")
            self._producer = None

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for pending in batch:
            if not pending.answer.done():
                pending.answer.set_exception(error)
