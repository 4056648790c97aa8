"""The topics Memstream uses, and their creation at start-up when missing.

    ingest       commands (API, producers)          retention forever: the log is the source of truth
    memory       facts (the owner)                  retention forever: every read model is rebuilt from it
    state        the owner's per-user memory        compacted: the latest value of each key is what counts
    progress     how far the projection writer is   compacted
    dead-letter  records parked with their reason   retention forever
    projects     project records                    retention forever

Every topic has ``MEMSTREAM_TOPIC_PARTITIONS`` partitions: a user's records land in the same
partition number of each (same key, same partitioner), and the owner keeps the state of ingest
partition p in state partition p.
"""

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from memstream.settings import Settings

log = logging.getLogger(__name__)


def topic_configs(settings: Settings, compacted: bool = False) -> dict[str, str]:
    """The log is never expired (rebuild replays it from the start); with replication, a write is
    acknowledged only once ``min.insync.replicas`` have it."""
    configs = {"cleanup.policy": "compact"} if compacted else {"retention.ms": "-1", "retention.bytes": "-1"}
    if settings.topic_min_insync_replicas:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    return configs


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_ingest,
        settings.topic_memory,
        settings.topic_state,
        settings.topic_dead_letter,
        settings.topic_projects,
        settings.topic_progress,
    ]


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if not missing:
            return
        new = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.topic_replication,
                topic_configs=topic_configs(
                    settings, compacted=name in (settings.topic_state, settings.topic_progress)
                ),
            )
            for name in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently by another process")
        log.info("created topics %s with %d partitions", missing, settings.topic_partitions)
    finally:
        await admin.close()
