"""The Faust application: topics, and the agents that run on them.

    memstream.ingest ──▶ buffer agent ──▶ memstream.flushes ──▶ extract agent ──▶ memstream.memory
      (commands)        (per-user windows)  (BufferFlushed)     (LLM + profile)     (memory events)

The app is built from ``Settings`` (not at import time) so that tests can run more than one
differently-configured worker in a process.
"""

from typing import Mapping

import faust
from faust.types import TP

from memstream.settings import Settings
from streams import buffer, extract
from streams.embeddings import Embedder
from streams.extraction import Extractor
from streams.projects import ProjectDirectory
from streams.topics import Topics

def rewind_uncommitted(app: faust.App, topics: set[str]) -> None:
    """Make a rebalance rewind partitions that have no committed offset yet (faust-streaming 0.15
    with aiokafka 0.14).

    On a rebalance Faust drops the records it fetched but has not processed, counting on
    ``seek_to_committed`` to read them again; aiokafka leaves a partition whose committed offset
    is missing or 0 where it is, so those records were never processed (a restarted broker that
    forgot the group forces exactly such a rejoin: tasks stayed ``running`` for good). Such
    partitions go back to their beginning instead; the agents skip the records their tables
    already hold (each buffer and profile keeps the offset of the last record applied to it).
    """
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Mapping[TP, int]:
        committed = await seek_to_committed()
        fresh = {tp: 0 for tp, offset in committed.items() if not offset and tp.topic in topics}
        if fresh:
            await consumer.seek_wait(fresh)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning  # type: ignore[method-assign]


def _topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    return app.topic(name, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def build_app(
    settings: Settings, extractor: Extractor, embedder: Embedder | None, directory: ProjectDirectory
) -> faust.App:
    brokers = ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=settings.broker_session_timeout,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=False,
        autodiscover=False,
    )
    n = settings.topic_partitions
    topics = Topics(
        ingest=_topic(app, settings.topic_ingest, n),
        flushes=_topic(app, settings.topic_flushes, n),
        memory=_topic(app, settings.topic_memory, n),
        dead_letter=_topic(app, settings.topic_dead_letter, n),
        projects=_topic(app, settings.topic_projects, n),
    )
    rewind_uncommitted(app, {settings.topic_ingest, settings.topic_flushes})
    buffer.register(app, topics, settings)
    extract.register(app, topics, settings, extractor, embedder, directory)
    return app
