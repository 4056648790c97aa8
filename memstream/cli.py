"""The ``memstream`` command: dev (everything local, one process), worker, api, migrate, project,
rebuild (the read models from the log), replay-dead-letters (parked flushes), schema (the
producers' contract) and mcp (an MCP server for agents, a client of the HTTP API)."""

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from memstream import logs
from memstream.dead_letters import replay_dead_letters
from memstream.projects_admin import ProjectExists, create_project
from memstream.rebuild import RebuildRefused, rebuild
from memstream.schema import SCHEMA_DIR, write_schema
from memstream.settings import Settings
from memstream.stack import Stack
from projections.dead_letters import dead_letters_by_reason
from projections.replay import ReplayStats
from projections.schema import cluster_ddl, migrate
from projections.store import Store, open_store
from streams.runtime.lag import lags

log = logging.getLogger("memstream")


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _open_store(settings: Settings) -> Store:
    return await open_store(
        settings.clickhouse_url,
        settings.clickhouse_database,
        pool_size=settings.clickhouse_pool_size,
        cluster=settings.clickhouse_cluster,
    )


def _root_token(settings: Settings, data_dir: Path) -> str:
    """The configured root token, or one generated once and kept in the data dir."""
    if settings.root_token:
        return settings.root_token
    token_file = data_dir / "root_token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(24))
    return token_file.read_text().strip()


async def dev(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once at startup, before anything else runs
    base = Settings()
    broker_port = int(base.kafka_bootstrap.rsplit(":", 1)[1])
    settings = base.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "root_token": _root_token(base, data_dir),
            "kafka_bootstrap": f"127.0.0.1:{broker_port}",
            "clickhouse_url": f"chdb://{data_dir / 'clickhouse'}",
        }
    )
    try:  # the local stand-ins are the `dev` extra, and only `memstream dev` uses them
        from scripts.broker import LocalBroker
    except ImportError as exc:
        raise SystemExit(
            f"memstream dev runs on the local stand-ins, which are not installed ({exc}): "
            "from a checkout, run scripts/setup.sh (or pip install -e '.[dev]')"
        ) from None
    broker = LocalBroker(data_dir / "broker", broker_port)
    broker.start()
    log.info("local broker (noida-db) on %s, data in %s", settings.kafka_bootstrap, broker.data_dir)
    store = await _open_store(settings)
    stack = Stack(settings, store)
    try:
        await stack.start()
        log.info(
            "kept across restarts: the event log (broker data dir), ClickHouse read models, and each "
            "user's buffers, profile and queued work (restored from the state topic)"
        )
        print(
            f"\nMemstream is up at {stack.url}/api/v1   token: {settings.root_token}\n"
            f"  inspector: {stack.url}/inspector/   (sign in with the token)\n"
            f"  try: curl -H 'Authorization: Bearer {settings.root_token}' {stack.url}/api/v1/healthcheck\n",
            flush=True,
        )
        await _until_signalled()
        log.info("stopping")
    finally:
        await stack.stop()
        await store.close()
        broker.stop()


async def serve(worker: bool, api: bool) -> None:
    settings = Settings()
    store = await _open_store(settings)
    stack = Stack(settings, store, worker=worker, api=api)
    try:
        await stack.start()
        if api:
            print(f"Memstream API at {stack.url}/api/v1, inspector at {stack.url}/inspector/", flush=True)
        await _until_signalled()
    finally:
        await stack.stop()
        await store.close()


def run_print_cluster_ddl(cluster: str) -> int:
    try:
        statements = cluster_ddl(Settings().clickhouse_database, cluster)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("".join(f"{sql};\n\n" for sql in statements), end="")
    return 0


async def run_migrate() -> None:
    settings = Settings()
    store = await _open_store(settings)
    try:
        applied = await migrate(store)
        print(f"schema up to date ({'applied ' + str(applied) if applied else 'nothing to apply'})")
    finally:
        await store.close()


class _ProgressBar:
    """Log offsets replayed, offsets/s and ETA; opened at the first report, which carries the total
    (so a refused rebuild draws no bar)."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def __call__(self, stats: ReplayStats) -> None:
        if self._bar is None:
            self._bar = tqdm(total=stats.total, desc="replaying the log", unit=" offsets", unit_scale=True)
        self._bar.update(stats.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def run_rebuild(into: str | None) -> int:
    settings = Settings()
    store = await _open_store(settings)
    bar = _ProgressBar()
    try:
        done = await rebuild(settings, store, into, progress=bar)
    except RebuildRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
        await store.close()
    stats = done.stats
    print(
        f"rebuilt database {done.database} from {stats.read} records ({stats.skipped} undecodable, skipped); "
        f"projection group {done.group} continues after them"
    )
    if into:
        print(
            f"to serve it, restart the workers and then the API with\n"
            f"  MEMSTREAM_CLICKHOUSE_DATABASE={done.database} MEMSTREAM_PROJECTION_GROUP={done.group}\n"
            f"stop the old workers, and drop database {settings.clickhouse_database} once nothing reads it"
        )
    return 0


async def run_replay_dead_letters() -> None:
    print((await replay_dead_letters(Settings())).summary())


async def run_status() -> None:
    settings = Settings()
    store = await _open_store(settings)
    try:
        for group, rows in (await lags(settings)).items():
            print(f"consumer group {group}: lag {sum(r.lag for r in rows)}")
            for row in rows:
                print(f"  {row.topic}[{row.partition}]  committed {row.committed}  end {row.end}  lag {row.lag}")
        parked = await dead_letters_by_reason(store)
        print(f"dead letters: {sum(r['count'] for r in parked)}")
        for reason in parked:
            print(f"  {reason['count']:>6}  {reason['kind']}: {reason['reason']}")
    finally:
        await store.close()


async def run_project_create(name: str) -> int:
    try:
        token = await create_project(Settings(), name)
    except (ProjectExists, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"project {name} created; its token (shown once, only a hash is kept):\n{token}")
    return 0


def run_schema(directory: Path) -> None:
    changed = write_schema(directory)
    print(f"wrote {', '.join(map(str, changed))}" if changed else f"{directory} is up to date")


def run_mcp(args: argparse.Namespace) -> int:
    from memstream.mcp_server import API_URL_ENV, DEFAULT_API_URL, ConfigError, read_token, run

    try:
        token = read_token(args.token_file)
        api_url = os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        asyncio.run(run(args.transport, token, api_url, args.host, args.port))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="memstream", description="Long-term user memory over Kafka and ClickHouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    dev_cmd = commands.add_parser("dev", help="everything local in one process: broker, ClickHouse, worker, API")
    dev_cmd.add_argument("--host", default="127.0.0.1")
    dev_cmd.add_argument("--port", type=int, default=8019)
    dev_cmd.add_argument("--data-dir", type=Path, default=Path(".memstream"))
    commands.add_parser("worker", help="the owner stage and the projection writer (external Kafka and ClickHouse)")
    commands.add_parser("api", help="the HTTP API (external Kafka and ClickHouse)")
    migrate_cmd = commands.add_parser("migrate", help="create or upgrade the ClickHouse schema")
    migrate_cmd.add_argument(
        "--print-cluster-ddl",
        metavar="CLUSTER",
        help="print the schema's statements for a ClickHouse cluster (replicated, sharded) and exit; "
        "connects to nothing",
    )
    rebuild_cmd = commands.add_parser(
        "rebuild", help="drop the read models and replay the topics into them (stop the workers first, or use --into)"
    )
    rebuild_cmd.add_argument(
        "--into", metavar="DB", help="rebuild into this fresh database instead, beside the live one"
    )
    commands.add_parser(
        "replay-dead-letters", help="send parked flushes back to extraction, once each (when the LLM answers again)"
    )
    commands.add_parser("status", help="each consumer group's lag per partition, and the dead letters by reason")
    schema_cmd = commands.add_parser(
        "schema", help="write the JSON Schema of the records producers may publish on the ingest topic"
    )
    schema_cmd.add_argument("--out", type=Path, default=SCHEMA_DIR, help=f"directory to write (default {SCHEMA_DIR})")
    project_cmd = commands.add_parser("project", help="manage projects").add_subparsers(dest="action", required=True)
    project_create = project_cmd.add_parser("create", help="create a project and print its token sk-<project>-<secret>")
    project_create.add_argument("name")
    mcp_cmd = commands.add_parser(
        "mcp",
        help="an MCP server for agents, acting for one project through the HTTP API (MEMSTREAM_API_URL); "
        "token from MEMSTREAM_MCP_TOKEN or --token-file",
    )
    mcp_cmd.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    mcp_cmd.add_argument("--host", default="127.0.0.1", help="http: the address to listen on")
    mcp_cmd.add_argument("--port", type=int, default=8020, help="http: the port to listen on (endpoint /mcp)")
    mcp_cmd.add_argument("--token-file", type=Path, help="a file holding the project token (else MEMSTREAM_MCP_TOKEN)")
    args = parser.parse_args(argv)
    logs.configure(Settings().log_format)
    if args.command == "dev":
        asyncio.run(dev(args))
    elif args.command == "worker":
        asyncio.run(serve(worker=True, api=False))
    elif args.command == "api":
        asyncio.run(serve(worker=False, api=True))
    elif args.command == "project":
        sys.exit(asyncio.run(run_project_create(args.name)))
    elif args.command == "rebuild":
        sys.exit(asyncio.run(run_rebuild(args.into)))
    elif args.command == "replay-dead-letters":
        asyncio.run(run_replay_dead_letters())
    elif args.command == "status":
        asyncio.run(run_status())
    elif args.command == "mcp":
        sys.exit(run_mcp(args))
    elif args.command == "schema":
        run_schema(args.out)
    elif args.print_cluster_ddl:
        sys.exit(run_print_cluster_ddl(args.print_cluster_ddl))
    else:
        asyncio.run(run_migrate())
