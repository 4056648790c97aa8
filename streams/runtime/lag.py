"""How far behind the log each consumer group of the pipeline is, per partition (for
``memstream status`` and ``GET /api/v1/status``).

Lag is the group's committed offset against the partition's last stable offset (what a
``read_committed`` reader can reach; transaction markers take offsets too, so a caught-up group
may sit one or two offsets below the raw end while it has nothing to read).
"""

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from memstream.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


def stages(settings: Settings) -> dict[str, list[str]]:
    """Each consumer group of Memstream's pipeline, and the topics it reads."""
    return {
        settings.app_id: [settings.topic_ingest],
        settings.projection_group: [settings.topic_memory, settings.topic_projects, settings.topic_dead_letter],
    }


async def lags(settings: Settings) -> dict[str, list[PartitionLag]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, isolation_level="read_committed"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await admin.start()
    try:
        await consumer.topics()
        out: dict[str, list[PartitionLag]] = {}
        for group, topics in stages(settings).items():
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            rows = []
            for tp in tps:
                offset = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None
                rows.append(PartitionLag(tp.topic, tp.partition, offset, ends[tp], max(0, ends[tp] - (offset or 0))))
            out[group] = rows
        return out
    finally:
        await admin.close()
        await consumer.stop()
