"""Insert throughput and latency: ``POST /api/v1/blobs/insert/{user}`` (async, acks=all).

    load generator (this process) ──HTTP──▶ memstream api (child process) ──aiokafka──▶ broker
    baseline:  this process ──aiokafka, same producer settings──▶ broker   (the ceiling)

Closed loop at rising concurrency (1 → 64), then an open-loop run at a fixed 500 req/s. No worker
runs: what is measured is the API taking a blob and the broker committing it. The baseline
sends the same encoded record with acks=all, idempotence and linger 1 ms, outside transactions,
at the same concurrencies: the broker's rate for plain produce. The API commits its records in
transactions (``api.producer``), so ``api/raw`` says how much of that rate the HTTP layer and the
transactions keep. The ``*_cpu`` columns say how busy each process was, in cores (1.0 = one core
all the time): the generator (``client``), the broker and each API process. An API process near
1.0 is the limit (one event loop, one core).
"""

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from api.models import new_blob
from scripts.bench import harness
from scripts.bench.cluster import Services, idle_cpu, with_cpu
from scripts.bench.harness import Table, below, ratio
from scripts.bench.load import ApiClient, closed_loop, open_loop, user_ids
from streams.records import BlobType, encode

TARGET_RATE = 3000.0  # inserts/s at the best concurrency
TARGET_P99_MS = 20.0  # at the fixed rate
MESSAGE = {
    "role": "user",
    "content": "Hi, I'm Alice. I live in Paris, I play the cello and I love jazz on Sunday mornings.",
}
BODY = json.dumps({"blob_type": "chat", "blob_data": {"messages": [MESSAGE]}}).encode()
USERS = 1000  # keys spread over every partition


@dataclass(frozen=True)
class Sizes:
    levels: tuple[int, ...]
    seconds: float  # per concurrency level
    fixed_rate: float
    fixed_seconds: float  # 0: no fixed-rate run
    warmup_seconds: float
    idle_seconds: float = 3.0


FULL = Sizes((1, 2, 4, 8, 16, 32, 64), 5.0, 500.0, 10.0, 1.0)
QUICK = Sizes((1, 8), 0.3, 500.0, 0.3, 0.2, 0.5)


async def raw_produce(services: Services, concurrency: int, seconds: float) -> dict[str, Any]:
    """The broker's rate for the API's record, produced with acks=all and idempotence, no transaction."""
    record = new_blob("default", user_ids(1)[0], BlobType.chat, {"messages": [MESSAGE]})
    value, key, topic = encode(record), record.key, services.settings.topic_ingest
    producer = AIOKafkaProducer(
        bootstrap_servers=services.broker.bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)

        async def send() -> bool:
            await producer.send_and_wait(topic, value, key=key)
            return True

        result, cpu = await with_cpu(services, closed_loop(send, concurrency, seconds))
    finally:
        await producer.stop()
    return {**result.summary(), "client_cpu": cpu["client_cpu"], "broker_cpu": cpu["broker_cpu"]}


async def api_inserts(services: Services, sizes: Sizes) -> dict[str, Any]:
    """Closed-loop levels and the fixed-rate run against the API processes of ``services``."""
    client = ApiClient(services.urls)
    users = iter(user_ids(10**6))

    async def insert() -> bool:
        ok, _ = await client.request("POST", f"/blobs/insert/{next(users)}", BODY)
        return ok

    try:
        await closed_loop(insert, 8, sizes.warmup_seconds)
        levels = []
        for concurrency in sizes.levels:
            result, cpu = await with_cpu(services, closed_loop(insert, concurrency, sizes.seconds))
            levels.append({"concurrency": concurrency, **result.summary(), **cpu})
        fixed = None
        if sizes.fixed_seconds:
            result, cpu = await with_cpu(
                services, open_loop(insert, sizes.fixed_rate, int(sizes.fixed_rate * sizes.fixed_seconds))
            )
            fixed = {"target_req_per_s": sizes.fixed_rate, **result.summary(), **cpu}
    finally:
        await client.close()
    return {"levels": levels, "fixed_rate": fixed}


def peak(levels: list[dict[str, Any]]) -> dict[str, Any]:
    return max(levels, key=lambda row: row["req_per_s"])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="memstream-bench-insert-") as tmp:
        async with Services(Path(tmp), api=args.api_processes) as services:
            idle = await idle_cpu(services, sizes.idle_seconds)
            baseline = [{"concurrency": c, **await raw_produce(services, c, sizes.seconds)} for c in sizes.levels]
            measured = await api_inserts(services, sizes)
    levels = [
        {**row, "raw_per_s": raw["req_per_s"], "api_over_raw": ratio(row["req_per_s"], raw["req_per_s"])}
        for row, raw in zip(measured["levels"], baseline)
    ]
    best, fixed = peak(levels), measured["fixed_rate"]
    targets = {
        "peak_req_per_s": {
            "target": TARGET_RATE,
            "measured": best["req_per_s"],
            "met": best["req_per_s"] >= TARGET_RATE,
        },
        "p99_ms_at_fixed_rate": {
            "target": TARGET_P99_MS,
            "measured": fixed["p99_ms"],
            "met": below(fixed["p99_ms"], TARGET_P99_MS) and fixed["errors"] == 0,
        },
    }
    cpu_columns = [name for name in levels[0] if name.endswith("_cpu")]
    tables = [
        Table(
            f"POST /blobs/insert, closed loop, {args.api_processes} API process(es) vs raw aiokafka produce "
            f"({sizes.seconds:g}s per level)",
            [
                "concurrency",
                "req_per_s",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "errors",
                *cpu_columns,
                "raw_per_s",
                "api_over_raw",
            ],
            levels,
        ),
        Table(
            f"POST /blobs/insert, open loop at {fixed['target_req_per_s']:g} req/s for {sizes.fixed_seconds:g}s",
            ["target_req_per_s", "req_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", *cpu_columns],
            [fixed],
        ),
        Table("Idle, before any request (cores busy)", list(idle), [idle]),
        Table(
            "Targets",
            ["target", "goal", "measured", "met"],
            [
                {"target": name, "goal": t["target"], "measured": t["measured"], "met": t["met"]}
                for name, t in targets.items()
            ],
        ),
    ]
    return {
        "api_processes": args.api_processes,
        "sizes": sizes.__dict__,
        "idle_cpu": idle,
        "baseline": baseline,
        "levels": levels,
        "fixed_rate": fixed,
        "peak": best,
        "targets": targets,
        "tables": tables,
    }


def cli() -> None:
    p = harness.parser("insert", __doc__.splitlines()[0])
    p.add_argument("--api-processes", type=int, default=1, help="API processes behind the generator (round-robin)")
    harness.main("insert", run, p.parse_args())


if __name__ == "__main__":
    cli()
