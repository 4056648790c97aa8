"""One store interface over embedded ClickHouse (chDB) and a ClickHouse server.

``chdb:///path`` opens chDB in this process through clickhouse-connect's sync client, called
from a thread (one process owns a chDB path, and its client is not thread-safe, hence the
lock). Any other URL uses clickhouse-connect's async HTTP client, as against a real server.
Callers only see ``query``/``command``/``insert`` and ``StoreUnavailable``.

A server store may serve a cluster (``cluster``): the read models are then Distributed tables over
replicated local tables (``projections.cluster_schema``), and the client runs with
``CLUSTER_SETTINGS``.
"""

import asyncio
import contextlib
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

Row = dict[str, Any]

# Settings of every query on a cluster. A Distributed insert returns once each shard holds its rows
# (by default the node queues them and sends them later), so the writer's position says ClickHouse
# holds what it wrote, and a user's deletion cannot overtake the rows written before it. A subquery
# over a Distributed table inside a query over one (``IN``, ``JOIN``) runs on each shard against
# its local table, which is the whole answer because a user's rows are all on one shard (the
# default, ``deny``, refuses such queries on a cluster of more than one shard).
CLUSTER_SETTINGS: dict[str, Any] = {"distributed_foreground_insert": 1, "distributed_product_mode": "local"}

# Server errors that say a part of the deployment is away (a shard, a replica, Keeper), not that
# the statement is wrong: the store is unavailable, as when the server itself does not answer.
UNAVAILABLE_CODES = frozenset(
    {
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        242,  # TABLE_IS_READ_ONLY (a replica lost Keeper)
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT
        999,  # KEEPER_EXCEPTION
    }
)


class StoreUnavailable(Exception):
    """ClickHouse cannot be reached right now; the caller should answer 503 or retry later."""


class Store(Protocol):
    database: str
    cluster: str | None  # the ClickHouse cluster the read models are spread over; None: one server

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]: ...

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None: ...

    async def close(self) -> None: ...


class ColumnTypes:
    """Each table's column types, asked once (``DESCRIBE TABLE``) and handed to every insert:
    clickhouse-connect otherwise describes the table again before each insert, a second round
    trip per batch and table. A column it has not seen (added by a migration) asks again."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, str]] = {}

    async def of(self, store: "Store", table: str, columns: Sequence[str]) -> list[str] | None:
        """The types of ``columns`` of ``table``; None when the table lacks one (the insert then fails as it would)."""
        if not self._known(table, columns):
            self._types[table] = {row["name"]: row["type"] for row in await store.query(f"DESCRIBE TABLE {table}")}
        return [self._types[table][c] for c in columns] if self._known(table, columns) else None

    def _known(self, table: str, columns: Sequence[str]) -> bool:
        types = self._types.get(table)
        return types is not None and all(c in types for c in columns)


class EmbeddedStore:
    def __init__(self, path: Path, database: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.cluster: str | None = None
        self._client = clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}")
        self._lock = threading.Lock()
        self._types = ColumnTypes()

    def _locked(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(*args, **kwargs)

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        result = await asyncio.to_thread(self._locked, self._client.query, sql, parameters=params)
        return list(result.named_results())

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(self._locked, self._client.command, sql, parameters=params)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        types = await self._types.of(self, table, columns)
        await asyncio.to_thread(
            self._locked, self._client.insert, table, rows, column_names=list(columns), column_type_names=types
        )

    async def close(self) -> None:
        await asyncio.to_thread(self._locked, self._client.close)


@contextlib.contextmanager
def _availability() -> Iterator[None]:
    """A server error that says the deployment (or a part of it) is away raises StoreUnavailable."""
    try:
        yield
    except DatabaseError as exc:
        if isinstance(exc, OperationalError) or exc.code in UNAVAILABLE_CODES:
            raise StoreUnavailable(str(exc)) from exc
        raise


class ServerStore:
    def __init__(self, client: Any, database: str, cluster: str | None = None) -> None:
        self.database = database
        self.cluster = cluster
        self._client = client
        self._types = ColumnTypes()

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        with _availability():
            result = await self._client.query(sql, parameters=params)
        return list(result.named_results())

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with _availability():
            await self._client.command(sql, parameters=params)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        types = await self._types.of(self, table, columns)
        with _availability():
            await self._client.insert(table, rows, column_names=list(columns), column_type_names=types)

    async def close(self) -> None:
        await self._client.close()


class DatabaseView:
    """Another database through an open store's client (one process owns a chDB path, so a
    rebuild into a fresh database beside the live one must share the client). It does not own
    the client: closing the view leaves the store open."""

    def __init__(self, store: Store, database: str) -> None:
        self.database = database
        self.cluster = store.cluster
        self._store = store

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        return await self._store.query(sql, params)

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        await self._store.command(sql, params)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        await self._store.insert(table, rows, columns)

    async def close(self) -> None:
        return None


async def open_store(url: str, database: str, *, pool_size: int = 20, cluster: str | None = None) -> Store:
    """The store at ``url``; a server's client keeps at most ``pool_size`` connections open, and
    ``cluster`` names the ClickHouse cluster the read models are spread over (servers only)."""
    if url.startswith("chdb://"):
        if cluster is not None:
            raise StoreUnavailable(
                f"{url} is embedded ClickHouse (chDB), one process: a cluster needs ClickHouse servers"
            )
        if importlib.util.find_spec("chdb") is None:
            raise StoreUnavailable(
                f"{url} is embedded ClickHouse (chDB), part of the `dev` extra, which is not "
                "installed: set MEMSTREAM_CLICKHOUSE_URL to a ClickHouse server, or install "
                "memstream[dev]"
            )
        return await asyncio.to_thread(EmbeddedStore, Path(url.removeprefix("chdb://")), database)
    try:
        client = await clickhouse_connect.get_async_client(
            dsn=url,
            connector_limit=pool_size,
            connector_limit_per_host=pool_size,
            settings=CLUSTER_SETTINGS if cluster is not None else None,
        )
    except OperationalError as exc:
        raise StoreUnavailable(str(exc)) from exc
    return ServerStore(client, database, cluster)
