"""Scaling: the end-to-end and insert measurements with N = 1 and N = 2 of each process.

    generator ──round-robin──▶ N × memstream api ──▶ broker ──▶ N × memstream worker
                                                      (the topics' 4 partitions split between the
                                                       N workers of each consumer group)

One deployment per N, every process reaching ClickHouse through the chDB HTTP front
(``scripts/clickhouse_front.py``), so the two runs differ only in the process count. In each:
first ``e2e.measure`` (latency at a fixed sample rate, then a burst for flushes per second), then
``insert.api_inserts`` (closed loop, no fixed-rate run) while the workers take what it sends,
as they would in production, with the raw aiokafka rate at the top concurrency as the ceiling.
"""

import argparse
import importlib
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from scripts.bench import e2e, harness, insert
from scripts.bench.harness import Table, ratio

PROCESSES = (1, 2)
INSERT_FULL = insert.Sizes((16, 64), 5.0, 0.0, 0.0, 1.0)
INSERT_QUICK = insert.Sizes((8,), 0.3, 0.0, 0.0, 0.2, 0.5)
E2E_FULL = e2e.Sizes(((100, 100),), 5.0, 300, 30.0)
E2E_QUICK = e2e.Sizes(((5, 2),), 10.0, 4, 20.0, 0.5)


def front_missing() -> str | None:
    """Why scaling cannot run, or None: it needs the chDB HTTP front to share ClickHouse."""
    if importlib.util.find_spec("scripts.clickhouse_front") is None:
        return "scripts/clickhouse_front.py is missing: two processes cannot share one embedded chDB path"
    if not hasattr(importlib.import_module("scripts.clickhouse_front"), "ClickHouseFront"):
        return "scripts/clickhouse_front.py has no ClickHouseFront start/stop handle yet"
    return None


async def deployment(processes: int, insert_sizes: insert.Sizes, e2e_sizes: e2e.Sizes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memstream-bench-scaling-") as tmp:
        async with e2e.pipeline(Path(tmp), processes, processes) as (services, llm):
            flow = await e2e.measure(services, e2e_sizes, llm)
            inserts = await insert.api_inserts(services, insert_sizes)
            raw = await insert.raw_produce(services, insert_sizes.levels[-1], insert_sizes.seconds)
    best = insert.peak(inserts["levels"])
    return {
        "processes": processes,
        "e2e": flow,
        "insert": {
            "peak_req_per_s": best["req_per_s"],
            "at_concurrency": best["concurrency"],
            "p99_ms": best["p99_ms"],
            "raw_per_s": raw["req_per_s"],
            "levels": inserts["levels"],
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    reason = front_missing()
    if reason:
        return {
            "done": False,
            "reason": reason,
            "tables": [Table("Scaling: not run", ["reason"], [{"reason": reason}])],
        }
    insert_sizes, e2e_sizes = (INSERT_QUICK, E2E_QUICK) if args.quick else (INSERT_FULL, E2E_FULL)
    one, two = [await deployment(n, insert_sizes, e2e_sizes) for n in PROCESSES]

    def row(measure: str, a: float | None, b: float | None, baseline: str = "") -> dict[str, Any]:
        return {"measure": measure, "one": a, "two": b, "two_over_one": ratio(b, a), "baseline": baseline}

    users = e2e_sizes.scenarios[0][0]
    rows = [
        row(
            f"insert → visible p50 ms, {users} users",
            one["e2e"]["scenarios"][0]["p50_ms"],
            two["e2e"]["scenarios"][0]["p50_ms"],
        ),
        row(
            f"insert → visible p95 ms, {users} users",
            one["e2e"]["scenarios"][0]["p95_ms"],
            two["e2e"]["scenarios"][0]["p95_ms"],
        ),
        row(
            f"burst flushes/s, {e2e_sizes.burst} flushes",
            one["e2e"]["burst"]["flushes_per_s"],
            two["e2e"]["burst"]["flushes_per_s"],
        ),
        row(
            "insert peak req/s",
            one["insert"]["peak_req_per_s"],
            two["insert"]["peak_req_per_s"],
            f"raw produce {one['insert']['raw_per_s']:,.0f} / {two['insert']['raw_per_s']:,.0f} per s",
        ),
    ]
    table = Table(
        "Scaling: N API + N worker processes, N = 1 vs 2, ClickHouse through the chDB HTTP front in both",
        ["measure", "one", "two", "two_over_one", "baseline"],
        rows,
    )
    return {"done": True, "runs": [one, two], "summary": rows, "tables": [table]}


def cli() -> None:
    harness.main("scaling", run, harness.parser("scaling", __doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    cli()
