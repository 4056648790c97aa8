"""Topic names and their creation: Memstream creates the topics it needs at start-up.

Source topics must exist with their partition count *before* Faust starts, or Faust's tables
see a partition mismatch against auto-created single-partition topics.
"""

import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator

import faust

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


async def publish(topic: faust.TopicT, record: Record) -> None:
    """Send a record keyed by its user, so it lands in that user's partition."""
    await topic.send(key=record.key, value=encode(record))


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


@contextlib.asynccontextmanager
async def dead_letter_on_error(topics: Topics, event: faust.EventT) -> AsyncIterator[None]:
    """Keep an agent alive past a record it cannot process: log it and park it as a dead letter."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
        log.exception("cannot process record at %s:%d:%d", event.message.topic, event.message.partition, event.message.offset)
        error = f"{type(exc).__name__}: {exc}".encode()
        await topics.dead_letter.send(key=event.key, value=event.value, headers={"error": error})
