"""Rebuilding the ClickHouse read models from the event log (``memstream rebuild``).

A rebuild drops the read models of one database (``projections.schema.drop_schema``: the
schema's tables, nothing else), migrates it again, replays every topic the projection writer
reads from its first record up to the end offsets taken when the replay starts
(``projections.replay``), and then commits those end offsets as the position of the projection
consumer group that will keep the database up to date. Two targets:

- **in place** (the default): the configured database and ``MEMSTREAM_PROJECTION_GROUP``. The
  projection writers (``memstream worker``, ``memstream dev``) must be stopped first: a writer
  applying records while the tables are dropped and refilled interleaves its writes with the
  replay's, and some writes are statements over what is there (a user's deletion erases rows
  rather than versioning them), so an older record replayed after it brings the rows back. The
  rebuild refuses while the group has members, and fails without committing when a writer of
  the group joined or committed while it ran (run it again once the writers are stopped). Reads
  answer from the half-filled tables until it ends.
- **into a fresh database** (``--into DB``), beside the running system: the group is
  ``<MEMSTREAM_PROJECTION_GROUP>.<DB>``, which no writer uses yet. Then start writers with
  ``MEMSTREAM_CLICKHOUSE_DATABASE=DB`` and that group (they continue from where the replay
  stopped), move the API over, stop the old writers and drop the old database.

Records appended while the replay runs lie after its end offsets: it leaves them, and since the
group's committed offsets are exactly those ends, the group's writer applies them when it
starts; nothing is skipped and nothing is applied twice.

The replay can only give back what the log still holds, so the rebuild refuses, before dropping
anything, when a partition no longer starts at offset 0 (records expired or were deleted). The
topics Memstream creates never expire records (``streams.topics.topic_configs``: retention.ms
and retention.bytes -1); topics created by other means must be configured so too.
"""

import re
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from memstream.settings import Settings
from projections.replay import Progress, ReplayStats, replay
from projections.schema import drop_schema, migrate
from projections.store import DatabaseView, Store


class RebuildRefused(Exception):
    """The rebuild cannot be done safely now; the message says why and what to do."""


@dataclass(frozen=True)
class Rebuilt:
    database: str
    group: str  # the projection group whose committed offsets continue the replay
    stats: ReplayStats


@dataclass(frozen=True)
class _GroupState:
    members: list[str]  # client hosts of the group's active members
    offsets: dict[TopicPartition, int]  # committed


async def _group_state(admin: AIOKafkaAdminClient, group: str) -> _GroupState:
    described = [
        g for response in await admin.describe_consumer_groups([group]) for g in response.to_object()["groups"]
    ]
    members = [f"{m['client_id']}@{m['client_host']}" for g in described for m in g["members"]]
    committed = await admin.list_consumer_group_offsets(group)
    return _GroupState(members, {tp: meta.offset for tp, meta in committed.items()})


async def _commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (the group has no members)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def rebuild(
    settings: Settings, store: Store, into: str | None = None, progress: Progress | None = None
) -> Rebuilt:
    """Rebuild ``store``'s database in place, or the database ``into`` through ``store``'s client.
    ``progress`` is called once the log's size is known (nothing read yet) and after each batch."""
    if into is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", into):
        raise RebuildRefused(f"{into!r} is not a database name (letters, digits and _)")
    if into == store.database:
        raise RebuildRefused(f"{into} is the live database: rebuild it in place (without --into)")
    target = store if into is None else DatabaseView(store, into)
    group = settings.projection_group if into is None else f"{settings.projection_group}.{into}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        before = await _group_state(admin, group)
        if before.members:
            raise RebuildRefused(
                f"projection group {group} has active members ({', '.join(before.members)}): stop the workers "
                "(memstream worker / dev) first, or rebuild beside them with --into DB"
            )

        async def prepare(stats: ReplayStats) -> None:
            truncated = sorted(
                f"{tp.topic}[{tp.partition}] starts at {offset}" for tp, offset in stats.begins.items() if offset
            )
            if truncated:
                raise RebuildRefused(
                    f"the log lost its first records ({'; '.join(truncated)}): a replay cannot rebuild them"
                )
            await drop_schema(target)
            await migrate(target)
            if progress:
                progress(stats)

        stats = await replay(settings, target, progress, prepare=prepare)
        after = await _group_state(admin, group)
        if after != before:
            raise RebuildRefused(
                f"a projection writer of group {group} ran during the rebuild, so its writes and the replay's "
                "interleaved; the group's offsets were left as they are: stop it and rebuild again"
            )
        if stats.ends:
            await _commit(settings, group, stats.ends)
    finally:
        await admin.close()
    return Rebuilt(target.database, group, stats)
