"""The read models on a ClickHouse cluster: replicated, sharded, read and written through Distributed tables.

The single-node schema (``projections.schema``) is the source; ``on_cluster`` translates each of
its statements:

- a table ``T`` becomes ``T_local``, created ``ON CLUSTER`` on every node as
  ``ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/<db>/T', '{replica}', <T's version and
  is_deleted>)`` with T's columns and ORDER BY, and ``T`` itself, a ``Distributed`` table over the
  cluster's ``T_local`` tables with T's structure (``AS``). The code reads and inserts under the
  name ``T``, unchanged;
- ``ALTER TABLE T ADD COLUMN`` runs ``ON CLUSTER`` on ``T_local`` and then on ``T``;
- ``DROP TABLE T`` drops ``T`` and then ``T_local``, ``ON CLUSTER``; ``CREATE DATABASE`` runs
  ``ON CLUSTER``;
- any other statement is refused, so a migration of a new shape cannot silently skip the cluster.

A user's deletion is a lightweight ``DELETE`` mutation, which Distributed tables do not take: on a
cluster it runs on ``T_local ON CLUSTER`` (``mutation_target``).

**Sharding keys.** Every read is ``FINAL``, and ``FINAL`` merges rows within a shard only, so rows
that can replace one another (the same ORDER BY key) must land on the same shard. A key made of
columns of the ORDER BY key does that: equal ORDER BY keys give equal sharding keys. Within that
rule the keys keep together what is read together:

- the per-user tables (ORDER BY ``(project_id, user_id, …)``): ``sipHash64(project_id, user_id)``,
  the key's first two columns. All of a user's rows, in every table, are on one shard: a read of
  a user asks one shard, a deletion finds the user there, and a query over one per-user table
  with a subquery over another (``IN``, ``JOIN``) may run each shard against its local tables
  (``distributed_product_mode = 'local'``, set by ``projections.store`` on a cluster);
- ``tasks`` (ORDER BY ``(project_id, task_id, status)``): ``(project_id, task_id)``: a task's rows,
  one per status it went through, are read together by task id (``GROUP BY task_id``);
- ``usage`` (ORDER BY ``(project_id, day, usage_id)``) and ``dead_letters`` (ORDER BY
  ``(project_id, at, dead_letter_id)``): ``(project_id, <the id>)``; they are read as a project's
  sums and counts, which add up over shards;
- ``projects``, ``project_configs`` (ORDER BY ``project_id``): ``project_id``;
- ``schema_migrations`` (ORDER BY ``version``): ``version``.
"""

import re

SUFFIX = "_local"
PER_USER = "sipHash64(project_id, user_id)"
SHARDING_KEYS: dict[str, str] = {
    "users": PER_USER,
    "blobs": PER_USER,
    "buffer": PER_USER,
    "profiles": PER_USER,
    "profile_history": PER_USER,
    "events": PER_USER,
    "event_gists": PER_USER,
    "tasks": "sipHash64(project_id, task_id)",
    "usage": "sipHash64(project_id, usage_id)",
    "dead_letters": "sipHash64(project_id, dead_letter_id)",
    "projects": "sipHash64(project_id)",
    "project_configs": "sipHash64(project_id)",
    "schema_migrations": "sipHash64(version)",
}

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CREATE_DATABASE = re.compile(r"CREATE DATABASE IF NOT EXISTS (\w+)")
_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) (\(.*\))\s*ENGINE = ReplacingMergeTree(?:\((.*?)\))? (ORDER BY .+)",
    re.S,
)
_ALTER_TABLE = re.compile(r"ALTER TABLE (\w+)\.(\w+) (ADD COLUMN .+)", re.S)
_DROP_TABLE = re.compile(r"DROP TABLE IF EXISTS (\w+)\.(\w+) SYNC")


def _on(cluster: str) -> str:
    if not _NAME.fullmatch(cluster):
        raise ValueError(f"{cluster!r} is not a ClickHouse cluster name (letters, digits, _ . -)")
    return f"ON CLUSTER `{cluster}`"


def on_cluster(statement: str, cluster: str) -> list[str]:
    """The statements that do on ``cluster`` what ``statement`` (one of the single-node schema's,
    with its database filled in) does on one server."""
    on = _on(cluster)
    if match := _CREATE_DATABASE.fullmatch(statement):
        return [f"CREATE DATABASE IF NOT EXISTS {match[1]} {on}"]
    if match := _CREATE_TABLE.fullmatch(statement):
        db, table, columns, args, order_by = match.groups()
        versions = f", {args}" if args else ""
        engine = f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'{versions})"
        return [
            f"CREATE TABLE IF NOT EXISTS {db}.{table}{SUFFIX} {on} {columns} ENGINE = {engine} {order_by}",
            f"CREATE TABLE IF NOT EXISTS {db}.{table} {on} AS {db}.{table}{SUFFIX} "
            f"ENGINE = Distributed('{cluster}', {db}, {table}{SUFFIX}, {SHARDING_KEYS[table]})",
        ]
    if match := _ALTER_TABLE.fullmatch(statement):
        db, table, change = match.groups()
        return [f"ALTER TABLE {db}.{name} {on} {change}" for name in (f"{table}{SUFFIX}", table)]
    if match := _DROP_TABLE.fullmatch(statement):
        db, table = match.groups()
        return [f"DROP TABLE IF EXISTS {db}.{name} {on} SYNC" for name in (table, f"{table}{SUFFIX}")]
    raise ValueError(
        f"no cluster form for this schema statement; add one to projections/cluster_schema.py:\n{statement}"
    )


def mutation_target(database: str, table: str, cluster: str | None) -> str:
    """Where a mutation (``DELETE FROM <target> WHERE …``) of read model ``table`` runs: the
    table itself on one server; on a cluster, its local tables on every node."""
    return f"{database}.{table}" if cluster is None else f"{database}.{table}{SUFFIX} {_on(cluster)}"
