"""Topic names and their creation: Memstream creates the topics it needs at start-up.

Source topics must exist with their partition count *before* Faust starts, or Faust's tables
see a partition mismatch against auto-created single-partition topics.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Protocol

import faust
from faust.types import RecordMetadata

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from memstream.settings import Settings
from streams.events import Record, encode

log = logging.getLogger(__name__)

def topic_configs(settings: Settings) -> dict[str, str]:
    """The event log is the source of truth: never expire it (rebuild replays it from the start);
    with replication, a write is acknowledged only once ``min.insync.replicas`` have it."""
    configs = {"retention.ms": "-1", "retention.bytes": "-1"}
    if settings.topic_min_insync_replicas:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    return configs


@dataclass(frozen=True)
class Topics:
    """The Faust handles of Memstream's topics (raw bytes; records are encoded by ``streams.events``)."""

    ingest: faust.TopicT
    flushes: faust.TopicT
    memory: faust.TopicT
    dead_letter: faust.TopicT
    projects: faust.TopicT


async def publish(topic: faust.TopicT, record: Record) -> Awaitable[RecordMetadata]:
    """Send a record keyed by its user, so it lands in that user's partition. Returns its delivery:
    awaited, it says the broker has the record."""
    return await topic.send(key=record.key, value=encode(record))


class Outbox:
    """The records one input causes, sent at once and then awaited together, so an agent can count
    its input applied only once the broker has all of them. Faust's producer only logs a send that
    failed (the broker was away), so a failed one is sent again after a pause until it is taken;
    ids derive from the input, so a record that reaches the log twice changes nothing."""

    def __init__(self) -> None:
        self._sent: list[tuple[faust.TopicT, Record, Awaitable[RecordMetadata]]] = []

    async def send(self, topic: faust.TopicT, record: Record) -> None:
        self._sent.append((topic, record, await publish(topic, record)))

    async def delivered(self) -> None:
        delay = 0.2
        while self._sent:
            outcomes = await asyncio.gather(*(d for _, _, d in self._sent), return_exceptions=True)
            failed = [(t, r) for (t, r, _), outcome in zip(self._sent, outcomes) if isinstance(outcome, BaseException)]
            self._sent = []
            if failed:
                log.warning("%d records not taken by the broker; sending them again in %.1fs", len(failed), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                for topic, record in failed:
                    await self.send(topic, record)


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_ingest, settings.topic_flushes, settings.topic_memory,
        settings.topic_dead_letter, settings.topic_projects,
    ]


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if not missing:
            return
        configs = topic_configs(settings)
        new = [NewTopic(n, settings.topic_partitions, settings.topic_replication, topic_configs=configs) for n in missing]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently by another process")
        log.info("created topics %s with %d partitions", missing, settings.topic_partitions)
    finally:
        await admin.close()


class Delivered(Protocol):
    """A record as an agent gets it: Faust's message, or aiokafka's record read directly."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@contextlib.asynccontextmanager
async def dead_letter_on_error(topics: Topics, delivered: Delivered) -> AsyncIterator[None]:
    """Keep an agent alive past a record it cannot process: log it and park it as a dead letter."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
        log.exception("cannot process record at %s:%d:%d", delivered.topic, delivered.partition, delivered.offset)
        error = f"{type(exc).__name__}: {exc}".encode()
        await topics.dead_letter.send(key=delivered.key, value=delivered.value, headers={"error": error})
