"""Serve one chDB data path over ClickHouse's HTTP interface (the part clickhouse-connect uses).

One process owns a chDB data path. Where several local processes must share one ClickHouse
(separate ``memstream api`` and ``memstream worker``, two workers in a benchmark), this front owns
the path and serves it over HTTP, so clickhouse-connect's async client runs unchanged, as it will
against a real server (DESIGN.md, "Local stand-ins for production servers").

Served as ClickHouse serves it:

- ``GET /ping``, and ``GET /`` without a query: ``Ok.``
- ``GET``/``POST /``: the SQL is the ``query`` parameter followed by the body, so one body can
  hold ``INSERT … FORMAT Native`` and its binary rows; or the ``query`` field of a form
  (clickhouse-connect moves long parameters into multipart forms). A body may be compressed
  (``Content-Encoding`` gzip, deflate, lz4, zstd: what clickhouse-connect sends inserts with).
- ``param_<name>`` binds ``{name:Type}``. chDB binds parameters itself, parsing each value as
  escaped text of its declared type like the server does, so nothing is pasted into the SQL.
- ``database`` and ``default_format``; any other parameter the HTTP interface does not reserve is
  a setting for that request, applied with ``SET`` (chDB rejects unknown ones, as the server does).
- Headers ``X-ClickHouse-Format``/``-Timezone``/``-Query-Id``/``-Summary``. Errors answer 500 (403
  for bad credentials) with ``Code: N. DB::Exception: …`` and ``X-ClickHouse-Exception-Code``,
  so clickhouse-connect raises its usual ``DatabaseError``.
- Optional credentials (``--user``/``--password``), by basic auth or the ``X-ClickHouse-User``/
  ``-Key`` headers or ``user``/``password`` parameters.
- Optional server configuration (``--config-file``, read by chDB as clickhouse-local reads it):
  clusters (``remote_servers``) and macros, for the cluster schema's tests.

chDB is not thread-safe: one thread makes every engine call, in arrival order, while the event
loop keeps accepting requests.

Not served: sessions (``session_id`` is ignored; all requests share one chDB session, so a ``SET``
or ``USE`` sent as a statement outlives its request), external data tables, compressed responses
(clients accept plain ones), progress headers, cancelling a running query, read-only ``GET``.
Inline INSERT data is streamed into chDB when it comes as clickhouse-connect sends it
(``INSERT … FORMAT <name>`` on one line, then the data, no parameters used); any other shape goes
through chDB's ``query()``, which misreads large inline Native data.

``python -m scripts.clickhouse_front --path .memstream/clickhouse --port 8123`` runs it;
``ClickHouseFront`` runs it as a child process for tests and benchmarks.
"""

import argparse
import asyncio
import gzip
import json
import logging
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import chdb
import lz4.frame
from aiohttp import BasicAuth, hdrs, web

from scripts.broker import wait_for_port

try:
    from compression import zstd  # Python 3.14+
except ImportError:
    from backports import zstd

log = logging.getLogger("clickhouse_front")
T = TypeVar("T")

# Parameters of the HTTP interface that are not settings (the names ClickHouse's HTTPHandler reserves).
RESERVED_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "close_session",
        "compress",
        "decompress",
    }
)
PARAM_PREFIX = "param_"

BINARY_FORMATS = frozenset({"Native", "RowBinary", "RowBinaryWithNamesAndTypes", "Arrow", "ArrowStream", "Parquet"})
MAX_BODY = 1 << 30
# ClickHouse accepts URLs up to 1 MiB (http_max_uri_size); clickhouse-connect puts a command's
# parameters in the URL whatever their size (only queries move long ones into a form).
MAX_URL = 1 << 20
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# ``INSERT … FORMAT <name>`` on one line, then its data (as clickhouse-connect sends inserts).
_INLINE_INSERT = re.compile(rb"((?:\s+|--[^\n]*|/\*.*?\*/)*INSERT\b[^\n]*?)\s+FORMAT\s+(\w+)[ \t]*\r?\n", re.I | re.S)
_FORMAT_WORD = re.compile(rb"\bFORMAT\b", re.I)
_TRAILING_FORMAT = re.compile(rb"\bFORMAT\s+(\w+)\s*;?\s*\Z", re.I)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: ``Code: N. DB::Exception: …``, with the code in a header."""

    def __init__(self, code: int, text: str, status: int = 500) -> None:
        super().__init__(text)
        self.code, self.status = code, status

    @classmethod
    def of(cls, code: int, name: str, message: str, status: int = 500) -> "ClickHouseError":
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({name})", status)

    @classmethod
    def from_engine(cls, exc: Exception) -> "ClickHouseError":
        """chDB raises with the server's own text (after a prefix of its own, at times); keep that text."""
        text = str(exc)
        code = _ERROR_CODE.search(text)
        return cls(int(code[1]), text[code.start() :]) if code else cls.of(1001, "STD_EXCEPTION", text)


@dataclass(frozen=True)
class Query:
    sql: bytes  # the statement, followed by an INSERT's inline data
    params: dict[str, str]  # {name:Type} values, as the escaped text the server parses
    settings: dict[str, str]
    database: str
    default_format: str


@dataclass(frozen=True)
class Result:
    body: bytes
    fmt: str | None  # the output format, when the statement has a result set
    summary: dict[str, str]


def _lz4_frames(data: bytes) -> bytes:
    """clickhouse-connect compresses each insert block as its own frame; ``lz4.frame.decompress`` reads one."""
    out = []
    while data:
        frame = lz4.frame.LZ4FrameDecompressor()
        out.append(frame.decompress(data))
        if not frame.eof:
            raise ValueError("truncated lz4 frame")
        data = frame.unused_data
    return b"".join(out)


# Request body decoders, by Content-Encoding; gzip and zstd read concatenated members/frames themselves.
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "lz4": _lz4_frames,
    "zstd": zstd.decompress,
}


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Engine:
    """The chDB connection, and the database and settings it was left with. Used from one thread only."""

    def __init__(self, path: Path, config_file: Path | None = None) -> None:
        # A config file (clickhouse-local's --config-file) can declare clusters and macros.
        self._conn = chdb.connect(f"file:{path}?config-file={config_file}" if config_file else str(path))
        self._database = "default"
        self._settings: dict[str, str] = {}  # what this front has SET, and not reset since
        self.version, self.timezone = self._run("SELECT version(), timezone()", "TabSeparated").bytes().decode().split()

    def execute(self, query: Query) -> Result:
        self._use(query.database)
        self._apply(query.settings)
        inline = _INLINE_INSERT.match(query.sql)
        if inline:
            return Result(b"", None, self._insert(inline[1].decode(), inline[2].decode(), query.sql[inline.end() :]))
        if _FORMAT_WORD.search(query.sql) or query.default_format != "TabSeparated":
            result = self._run(query.sql, query.default_format, query.params)
            body = result.bytes() or b""
            explicit = _TRAILING_FORMAT.search(query.sql)
            fmt = explicit[1].decode() if explicit else (query.default_format if body else None)
            return Result(body, fmt, self._summary(result))
        # The server names the format of every result set, empty ones too (clickhouse-connect's
        # command() tells "" from a summary by it). With names, a result set is never empty.
        result = self._run(query.sql, "TabSeparatedWithNames", query.params)
        body = result.bytes() or b""
        return Result(body.partition(b"\n")[2], "TabSeparated" if body else None, self._summary(result))

    def close(self) -> None:
        self._conn.close()

    def _use(self, database: str) -> None:
        if database != self._database:
            self._run(f"USE {_identifier(database)}", "TabSeparated")
            self._database = database

    def _apply(self, settings: dict[str, str]) -> None:
        """Leave the session with exactly this request's settings: reset the last one's, set the new ones."""
        for name in [name for name in self._settings if name not in settings]:
            self._run(f"SET {name} = DEFAULT", "TabSeparated")
            del self._settings[name]
        for name, value in settings.items():
            if self._settings.get(name) != value:
                self._run(f"SET {name} = {_string_literal(value)}", "TabSeparated")
                self._settings[name] = value

    def _insert(self, statement: str, fmt: str, data: bytes) -> dict[str, str]:
        """Stream inline data into its INSERT: chDB's ``query()`` misreads large inline Native data."""
        try:
            with self._conn.send_insert(statement, fmt) as inserter:
                if data:
                    inserter.append(data)
                done = inserter.finish()
        except Exception as exc:  # as in _run
            raise ClickHouseError.from_engine(exc) from exc
        return {
            "written_rows": str(done.rows_written),
            "written_bytes": str(done.bytes_written),
            "elapsed_ns": str(int(done.elapsed * 1e9)),
        }

    def _run(self, sql: str | bytes, fmt: str, params: dict[str, str] | None = None) -> Any:
        try:
            return self._conn.query(sql, fmt, params=params)
        except Exception as exc:  # chDB raises plain RuntimeErrors that carry the ClickHouse error text
            raise ClickHouseError.from_engine(exc) from exc

    @staticmethod
    def _summary(result: Any) -> dict[str, str]:
        return {
            "read_rows": str(result.rows_read()),
            "read_bytes": str(result.bytes_read()),
            "written_rows": str(result.rows_written()),
            "written_bytes": str(result.bytes_written()),
            "elapsed_ns": str(int(result.elapsed() * 1e9)),
        }


async def _read_query(request: web.Request) -> Query | None:
    """The query a request carries, or None for a bare ``GET /``."""
    params = dict(request.query)
    body = b""
    if request.method == hdrs.METH_POST:
        if request.content_type == "multipart/form-data":
            for name, value in (await request.post()).items():
                if not isinstance(value, str):
                    raise ClickHouseError.of(48, "NOT_IMPLEMENTED", "External data tables are not served by this front")
                params[name] = value
        else:
            body = _decoded(await request.read(), request.headers.get(hdrs.CONTENT_ENCODING, ""))
    text = params.get("query", "")
    sql = text.encode() + (b"\n" if text and body else b"") + body
    if not sql.strip():
        if request.method == hdrs.METH_GET:
            return None
        raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query")
    settings = {
        name: value
        for name, value in params.items()
        if name and name not in RESERVED_PARAMS and not name.startswith(PARAM_PREFIX)
    }
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise ClickHouseError.of(115, "UNKNOWN_SETTING", f"Unknown setting {name!r}")
    return Query(
        sql=sql,
        params={
            name.removeprefix(PARAM_PREFIX): value for name, value in params.items() if name.startswith(PARAM_PREFIX)
        },
        settings=settings,
        database=params.get("database") or "default",
        default_format=params.get("default_format") or "TabSeparated",
    )


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in DECODERS:
        raise ClickHouseError.of(48, "NOT_IMPLEMENTED", f"Unsupported Content-Encoding {encoding!r}")
    try:
        return DECODERS[encoding](body)
    except Exception as exc:  # each codec raises its own error type
        raise ClickHouseError.of(271, "CANNOT_DECOMPRESS", f"Cannot decode the {encoding} body: {exc}") from exc


def _credentials(request: web.Request) -> tuple[str, str]:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header:
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return "", ""
        return auth.login, auth.password
    return (
        request.headers.get("X-ClickHouse-User") or request.query.get("user", "default"),
        request.headers.get("X-ClickHouse-Key") or request.query.get("password", ""),
    )


class Front:
    """The HTTP side: parses requests, hands them to the engine's thread, answers like ClickHouse."""

    def __init__(self, path: Path, credentials: tuple[str, str] | None, config_file: Path | None = None) -> None:
        self._path = path
        self._credentials = credentials
        self._config_file = config_file
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self.engine: Engine | None = None

    async def open(self) -> None:
        self.engine = await self._on_thread(Engine, self._path, self._config_file)

    async def close(self) -> None:
        if self.engine:
            await self._on_thread(self.engine.close)
        self._thread.shutdown()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/", self._query)
        app.router.add_post("/", self._query)
        return app

    async def _on_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        assert self.engine is not None, "open() first"
        headers = {
            "X-ClickHouse-Query-Id": request.query.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Timezone": self.engine.timezone,
        }
        try:
            query = await _read_query(request)
            if query is None:
                return await self._ping(request)
            self._authenticate(request)
            result = await self._on_thread(self.engine.execute, query)
        except ClickHouseError as exc:
            headers["X-ClickHouse-Exception-Code"] = str(exc.code)
            return web.Response(status=exc.status, text=f"{exc}\n", headers=headers)
        headers["X-ClickHouse-Summary"] = json.dumps(result.summary)
        if result.fmt:
            headers["X-ClickHouse-Format"] = result.fmt
        binary = result.fmt in BINARY_FORMATS
        return web.Response(
            body=result.body,
            headers=headers,
            content_type="application/octet-stream" if binary else "text/plain",
            charset=None if binary else "utf-8",
        )

    def _authenticate(self, request: web.Request) -> None:
        if self._credentials is None:
            return
        user, password = _credentials(request)
        expected_user, expected_password = self._credentials
        if not (
            secrets.compare_digest(user.encode(), expected_user.encode())
            and secrets.compare_digest(password.encode(), expected_password.encode())
        ):
            raise ClickHouseError.of(
                516,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
                status=403,
            )


async def serve(
    path: Path, host: str, port: int, credentials: tuple[str, str] | None = None, config_file: Path | None = None
) -> None:
    """Serve ``path`` on ``host:port`` until SIGTERM or SIGINT."""
    front = Front(path, credentials, config_file)
    runner = web.AppRunner(front.app(), access_log=None, max_line_size=MAX_URL)
    try:
        try:
            await front.open()
        except RuntimeError:
            log.error("cannot open chDB at %s; is another process using that path?", path)
            raise
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        assert front.engine is not None
        log.info("serving chDB %s at %s on http://%s:%d", front.engine.version, path, host, port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await front.close()
    log.info("stopped")


class ClickHouseFront:
    """The front as a child process in its own session, stopped with SIGTERM (the shape of ``LocalBroker``)."""

    def __init__(
        self,
        path: Path,
        port: int,
        host: str = "127.0.0.1",
        user: str | None = None,
        password: str = "",
        config_file: Path | None = None,
    ) -> None:
        self.path, self.port, self.host = path.resolve(), port, host
        self.user, self.password = user, password
        self.config_file = config_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def url(self) -> str:
        """What to give ``open_store`` or ``MEMSTREAM_CLICKHOUSE_URL``."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@" if self.user else ""
        return f"http://{auth}{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.path.with_name(f"{self.path.name}-front.log")

    def start(self, timeout: float = 60.0) -> None:
        command = [
            sys.executable,
            "-m",
            "scripts.clickhouse_front",
            "--path",
            str(self.path),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        if self.user:
            command += ["--user", self.user, "--password", self.password]
        if self.config_file:
            command += ["--config-file", str(self.config_file.resolve())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log_out:
            self._process = subprocess.Popen(
                command, stdout=log_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            try:
                wait_for_port(self.host, self.port, 0.5)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"the ClickHouse front is not up after {timeout:g}s; see {self.log_file}"
                    ) from None
        code, self._process = self._process.returncode, None
        raise RuntimeError(f"the ClickHouse front exited with {code} while starting; see {self.log_file}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the front and wait for it (killing it after ``timeout``); returns its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.clickhouse_front",
        description="Serve a chDB data path over ClickHouse's HTTP interface.",
    )
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory (created if missing)")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", help="require these credentials (default: accept any)")
    parser.add_argument("--password", default="")
    parser.add_argument("--config-file", type=Path, help="a ClickHouse config file for chDB (clusters, macros)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.path.mkdir(parents=True, exist_ok=True)
    credentials = (args.user, args.password) if args.user else None
    asyncio.run(serve(args.path.resolve(), args.host, args.port, credentials, args.config_file))


if __name__ == "__main__":
    main()
