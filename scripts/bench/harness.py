"""What every benchmark shares: the command line, machine facts, latency statistics, the printed
table and the JSON file.

A benchmark is an ``async def run(args) -> dict`` returning its results; ``main`` parses the
common options (``--quick``, ``--out``), runs it, prints its tables and writes the JSON with the
machine it ran on. The JSON always has ``benchmark``, ``quick``, ``machine``, ``started_at``,
``seconds`` and ``tables`` (each ``{title, columns, rows}``, what was printed), plus the
benchmark's own keys.
"""

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")

Row = dict[str, Any]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return 0.0


def machine() -> dict[str, Any]:
    """The facts a number needs next to it: cores, CPU, RAM, and how busy the machine already was."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (any order), ``q`` in 0..100; None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def latency_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of latencies given in seconds, in milliseconds (None when there are none)."""

    def ms(q: float) -> float | None:
        value = percentile(seconds, q)
        return None if value is None else round(value * 1000, 2)

    return {"p50_ms": ms(50), "p95_ms": ms(95), "p99_ms": ms(99), "max_ms": ms(100)}


def below(value: float | None, limit: float) -> bool:
    """A latency target: met only by a measured value under ``limit``."""
    return value is not None and value < limit


def ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 3) if part is not None and whole else None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)

    def render(self) -> str:
        cells = [[_cell(row.get(c)) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        line = "  ".join("-" * w for w in widths)
        out = [self.title, "  ".join(c.rjust(w) for c, w in zip(self.columns, widths)), line]
        out += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": self.columns, "rows": self.rows}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def parser(name: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m scripts.bench.{name}", description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes and durations: proves the script works in seconds")
    p.add_argument("--out", type=Path, help=f"JSON file to write (default: scripts/bench/results/{name}[-quick].json)")
    return p


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(
    name: str,
    run: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Run one benchmark: print its tables, write its JSON, return what was written.

    SIGTERM is turned into KeyboardInterrupt, so a stopped benchmark still stops every process
    it started and removes its temporary directory (the ``finally`` blocks run).
    """
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = datetime.now(UTC)
    facts = machine()
    clock = time.monotonic()
    results = asyncio.run(run(args))
    tables: list[Table] = results.pop("tables")
    payload = {
        "benchmark": name,
        "quick": args.quick,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - clock, 1),
        "machine": facts,
        "tables": [t.as_json() for t in tables],
        **results,
    }
    for table in tables:
        print(f"\n{table.render()}")
    out = args.out or RESULTS / f"{name}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")
    print(f"\n{name}: {payload['seconds']}s on {facts['nproc']} x {facts['cpu_model']}; wrote {out}", flush=True)
    return payload
