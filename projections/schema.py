"""ClickHouse schema as numbered migrations, applied in order and recorded (idempotent).

Every read model is a ReplacingMergeTree keyed by deterministic ids with a ``version``: for a
user's rows the ``seq`` of the fact that wrote them (the owner's per-user order), for project
rows the record's time (µs). Replaying the log rewrites the same rows instead of adding new ones,
and ``FINAL`` reads see the latest state. Rows are ordered by
``(project_id, user_id, …)`` because every API read is for one user of one project. On a store
with a cluster, every statement runs in its cluster form (``projections.cluster_schema``).
"""

import logging
import re

from projections.cluster_schema import on_cluster
from projections.store import Store

log = logging.getLogger(__name__)

TIME = "DateTime64(3, 'UTC')"

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "read models: users, blobs, buffer, profiles, events, tasks",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.users (
                project_id LowCardinality(String), user_id String, data String,
                created_at {TIME}, updated_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.blobs (
                project_id LowCardinality(String), user_id String, blob_id String,
                blob_type LowCardinality(String), blob_data String, fields String,
                created_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id, blob_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.buffer (
                project_id LowCardinality(String), user_id String, blob_id String,
                blob_type LowCardinality(String), status LowCardinality(String),
                updated_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id, blob_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.profiles (
                project_id LowCardinality(String), user_id String, profile_id UUID,
                topic String, sub_topic String, content String,
                created_at {TIME}, updated_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id, profile_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.events (
                project_id LowCardinality(String), user_id String, event_id UUID, event_data String,
                created_at {TIME}, updated_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id, event_id)""",
            # A task keeps one row per status it went through, so its start time survives its end.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.tasks (
                project_id LowCardinality(String), user_id String, task_id String,
                status LowCardinality(String), error String, results String,
                at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (project_id, task_id, status)""",
        ],
    ),
    (
        2,
        "memory surface: event search columns, gists, profile history, usage, project configs",
        [
            # Tags and the tip are copied out of event_data so tag search and lexical ranking are plain
            # column reads; the embedding is empty when no embedder is configured.
            "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS event_tip String AFTER event_data",
            "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS tags Array(String) AFTER event_tip",
            "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS tag_pairs Array(String) AFTER tags",
            "ALTER TABLE {db}.events ADD COLUMN IF NOT EXISTS embedding Array(Float32) AFTER tag_pairs",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.event_gists (
                project_id LowCardinality(String), user_id String, gist_id UUID, event_id UUID,
                content String, embedding Array(Float32),
                created_at {TIME}, updated_at {TIME}, version UInt64, is_deleted UInt8
            ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, user_id, gist_id)""",
            # One row per change of a slot, never replaced: the slot's history.
            f"""CREATE TABLE IF NOT EXISTS {{db}}.profile_history (
                project_id LowCardinality(String), user_id String, profile_id UUID, change_id String,
                op LowCardinality(String), topic String, sub_topic String, content String,
                source LowCardinality(String), source_id String, at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (project_id, user_id, profile_id, change_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.usage (
                project_id LowCardinality(String), user_id String, usage_id String, day Date,
                model LowCardinality(String), calls UInt32, input_tokens UInt64, output_tokens UInt64,
                at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (project_id, day, usage_id)""",
            f"""CREATE TABLE IF NOT EXISTS {{db}}.project_configs (
                project_id LowCardinality(String), config_yaml String, updated_at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY project_id""",
        ],
    ),
    (
        3,
        "projects (token hashes only)",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.projects (
                project_id LowCardinality(String), token_sha256 String, created_at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY project_id""",
        ],
    ),
    (
        4,
        "blobs: when the owner stored each (versions are now the owner's per-user seq, not times)",
        [f"ALTER TABLE {{db}}.blobs ADD COLUMN IF NOT EXISTS stored_at {TIME} DEFAULT created_at AFTER created_at"],
    ),
    (
        5,
        "dead letters: what could not be processed, and why",
        [
            f"""CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
                project_id LowCardinality(String), user_id String, dead_letter_id String, kind LowCardinality(String),
                reason String, source String, value String, at {TIME}, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (project_id, at, dead_letter_id)""",
        ],
    ),
    (
        6,
        "buffer: the flush whose window took each blob (what a slot's flush read)",
        ["ALTER TABLE {db}.buffer ADD COLUMN IF NOT EXISTS flush_id String DEFAULT '' AFTER status"],
    ),
]


MIGRATIONS_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {{db}}.schema_migrations (version UInt32, name String, applied_at {TIME}) "
    "ENGINE = ReplacingMergeTree ORDER BY version"
)


async def _run(store: Store, statement: str) -> None:
    """Run one schema statement, on the store's cluster when it has one (``projections.cluster_schema``)."""
    for sql in [statement] if store.cluster is None else on_cluster(statement, store.cluster):
        await store.command(sql)


async def migrate(store: Store) -> list[int]:
    """Create the database and apply missing migrations; returns the versions applied now."""
    db = store.database
    await _run(store, f"CREATE DATABASE IF NOT EXISTS {db}")
    await _run(store, MIGRATIONS_TABLE.format(db=db))
    done = {row["version"] for row in await store.query(f"SELECT version FROM {db}.schema_migrations")}
    applied = []
    for version, name, statements in MIGRATIONS:
        if version in done:
            continue
        for statement in statements:
            await _run(store, statement.format(db=db))
        await store.command(
            f"INSERT INTO {db}.schema_migrations VALUES ({{v:UInt32}}, {{n:String}}, now64(3))",
            {"v": version, "n": name},
        )
        log.info("applied migration %d: %s", version, name)
        applied.append(version)
    return applied


def cluster_ddl(database: str, cluster: str) -> list[str]:
    """The statements ``migrate`` runs on ``cluster`` for an empty ``database`` (without the rows
    that record the versions applied): for review, or to apply by hand."""
    single = [f"CREATE DATABASE IF NOT EXISTS {database}", MIGRATIONS_TABLE.format(db=database)]
    single += [sql.format(db=database) for _, _, statements in MIGRATIONS for sql in statements]
    return [sql for statement in single for sql in on_cluster(statement, cluster)]


_CREATED = re.compile(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)")


def schema_tables() -> list[str]:
    """The tables the migrations create, in the order they are created."""
    return [name for _, _, statements in MIGRATIONS for sql in statements for name in _CREATED.findall(sql)]


async def drop_schema(store: Store) -> list[str]:
    """Drop the read models and the record of the migrations, so ``migrate`` creates them again;
    whatever else the database holds (an analyst's tables, views, users) is left alone."""
    dropped = [*schema_tables(), "schema_migrations"]
    for table in dropped:
        # SYNC: the name and the data are gone when this returns, so the next CREATE cannot meet them.
        await _run(store, f"DROP TABLE IF EXISTS {store.database}.{table} SYNC")
    return dropped
