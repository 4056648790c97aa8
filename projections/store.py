"""One store interface over embedded ClickHouse (chDB) and a ClickHouse server.

``chdb:///path`` opens chDB in this process through clickhouse-connect's sync client, called
from a thread (one process owns a chDB path, and its client is not thread-safe, hence the
lock). Any other URL uses clickhouse-connect's async HTTP client, as against a real server.
Callers only see ``query``/``command``/``insert`` and ``StoreUnavailable``.
"""

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import clickhouse_connect
from clickhouse_connect.driver.exceptions import OperationalError

Row = dict[str, Any]


class StoreUnavailable(Exception):
    """ClickHouse cannot be reached right now; the caller should answer 503 or retry later."""


class Store(Protocol):
    database: str

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


class ServerStore:
    def __init__(self, client: Any, database: str) -> None:
        self.database = database
        self._client = client
        self._types = ColumnTypes()

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        try:
            result = await self._client.query(sql, parameters=params)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return list(result.named_results())

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            await self._client.command(sql, parameters=params)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        types = await self._types.of(self, table, columns)
        try:
            await self._client.insert(table, rows, column_names=list(columns), column_type_names=types)
        except OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self._client.close()


class DatabaseView:
    """Another database through an open store's client (one process owns a chDB path, so a
    rebuild into a fresh database beside the live one must share the client). It does not own
    the client: closing the view leaves the store open."""

    def __init__(self, store: Store, database: str) -> None:
        self.database = database
        self._store = store

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        return await self._store.query(sql, params)

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        await self._store.command(sql, params)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        await self._store.insert(table, rows, columns)

    async def close(self) -> None:
        return None


async def open_store(url: str, database: str) -> Store:
    if url.startswith("chdb://"):
        if importlib.util.find_spec("chdb") is None:
            raise StoreUnavailable(
                f"{url} is embedded ClickHouse (chDB), part of the `dev` extra, which is not "
                "installed: set MEMSTREAM_CLICKHOUSE_URL to a ClickHouse server, or install "
                "memstream[dev]"
            )
        return await asyncio.to_thread(EmbeddedStore, Path(url.removeprefix("chdb://")), database)
    try:
        client = await clickhouse_connect.get_async_client(dsn=url)
    except OperationalError as exc:
        raise StoreUnavailable(str(exc)) from exc
    return ServerStore(client, database)
