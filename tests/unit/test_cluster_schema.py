"""The cluster schema variant (``projections.cluster_schema``): what it derives from the single-node
migrations, and where a user's deletion runs. ClickHouse itself checks the statements in
``tests/integration/test_cluster.py``."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from projections.cluster_schema import PER_USER, SHARDING_KEYS, SUFFIX, mutation_target, on_cluster
from projections.rows import USER_TABLES, ops_for
from projections.schema import MIGRATIONS, MIGRATIONS_TABLE, cluster_ddl, schema_tables
from projections.writer import writes
from streams.records import UserForgotten

AT = datetime(2025, 1, 2, tzinfo=UTC)


def _order_by_columns() -> dict[str, list[str]]:
    created = [sql for _, _, statements in MIGRATIONS for sql in statements] + [MIGRATIONS_TABLE]
    found = {}
    for sql in created:
        if match := re.search(r"\{db\}\.(\w+) .*ORDER BY \(?([\w, ]+)\)?$", sql, re.S):
            found[match[1]] = [c.strip() for c in match[2].split(",")]
    return found


def test_every_sharding_key_is_made_of_its_tables_order_by_columns() -> None:
    """Rows with the same ORDER BY key (which FINAL merges, within a shard only) share a shard."""
    order_by = _order_by_columns()
    assert set(order_by) == set(SHARDING_KEYS) == {*schema_tables(), "schema_migrations"}
    for table, key in SHARDING_KEYS.items():
        columns = set(re.fullmatch(r"sipHash64\(([\w, ]+)\)", key)[1].split(", "))  # type: ignore[index]
        assert columns <= set(order_by[table]), table


def test_a_users_rows_are_on_one_shard_in_every_per_user_table() -> None:
    """A user's reads ask one shard, and a subquery over another per-user table finds the user's
    rows on the same shard (``distributed_product_mode = 'local'``)."""
    per_user = {table for table, columns in _order_by_columns().items() if columns[:2] == ["project_id", "user_id"]}
    assert per_user == {"users", "blobs", "buffer", "profiles", "profile_history", "events", "event_gists"}
    assert {table for table, key in SHARDING_KEYS.items() if key == PER_USER} == per_user


def test_each_table_becomes_a_replicated_local_table_and_a_distributed_table_of_its_name() -> None:
    ddl = cluster_ddl("db", "prod")
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS db ON CLUSTER `prod`"
    for table in [*schema_tables(), "schema_migrations"]:
        [local] = [sql for sql in ddl if sql.startswith(f"CREATE TABLE IF NOT EXISTS db.{table}{SUFFIX} ")]
        assert f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/db/{table}', '{{replica}}'" in local
        [distributed] = [sql for sql in ddl if sql.startswith(f"CREATE TABLE IF NOT EXISTS db.{table} ")]
        assert distributed.endswith(
            f"AS db.{table}{SUFFIX} ENGINE = Distributed('prod', db, {table}{SUFFIX}, {SHARDING_KEYS[table]})"
        )
    # a column added by a migration is added to both, local table first
    added = [sql for sql in ddl if "ADD COLUMN IF NOT EXISTS stored_at" in sql]
    assert [sql.split()[2] for sql in added] == [f"db.blobs{SUFFIX}", "db.blobs"]
    assert all("ON CLUSTER `prod`" in sql for sql in ddl)


def test_statements_without_a_cluster_form_and_bad_cluster_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no cluster form"):
        on_cluster("ALTER TABLE db.users MODIFY TTL updated_at + INTERVAL 1 DAY", "prod")
    with pytest.raises(ValueError, match="not a ClickHouse cluster name"):
        cluster_ddl("db", "prod`; DROP DATABASE db; --")
    assert on_cluster("DROP TABLE IF EXISTS db.users SYNC", "prod") == [
        "DROP TABLE IF EXISTS db.users ON CLUSTER `prod` SYNC",
        f"DROP TABLE IF EXISTS db.users{SUFFIX} ON CLUSTER `prod` SYNC",
    ]


class _Statements:
    """Just enough of a store for ``writes``: where statements would go."""

    def __init__(self, cluster: str | None) -> None:
        self.database, self.cluster = "db", cluster
        self.sent: list[str] = []

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.sent.append(sql)

    async def insert(self, table: str, rows: Any, columns: Any) -> None:
        return None


@pytest.mark.parametrize("cluster", [None, "prod"])
async def test_a_users_deletion_runs_where_the_rows_are(cluster: str | None) -> None:
    """Distributed tables take no mutations: on a cluster a deletion runs on every node's local tables."""
    store = _Statements(cluster)
    for write in writes(store, ops_for(UserForgotten(project_id="p", user_id="u", seq=3, occurred_at=AT))):  # type: ignore[arg-type]
        await write()
    expected = [
        f"DELETE FROM {mutation_target('db', t, cluster)} WHERE project_id = {{p:String}} AND user_id = {{u:String}}"
        for t in USER_TABLES
    ]
    assert store.sent == expected
    if cluster:
        assert (
            store.sent[0]
            == "DELETE FROM db.users_local ON CLUSTER `prod` WHERE project_id = {p:String} AND user_id = {u:String}"
        )
    else:
        assert store.sent[0] == "DELETE FROM db.users WHERE project_id = {p:String} AND user_id = {u:String}"
