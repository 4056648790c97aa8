"""The Faust application: topics, and the agents that run on them.

    memstream.ingest ──▶ buffer agent ──▶ memstream.flushes ──▶ extract agent ──▶ memstream.memory
      (commands)        (per-user windows)  (BufferFlushed)     (LLM + profile)     (memory events)

The app is built from ``Settings`` (not at import time) so that tests can run more than one
differently-configured worker in a process.
"""

import faust

from memstream.settings import Settings
from streams import buffer, extract
from streams.embeddings import Embedder
from streams.extraction import Extractor
from streams.gaps import Gaps
from streams.projects import ProjectDirectory
from streams.topics import Topics


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
    gaps = Gaps(app, settings.kafka_bootstrap, {settings.topic_ingest, settings.topic_flushes})
    buffer.register(app, topics, settings, gaps)
    extract.register(app, topics, settings, extractor, embedder, directory, gaps)
    return app
