"""The benchmarks work: each one's ``--quick`` mode runs to the end, prints its tables and writes
valid JSON with the keys its README promises. The numbers themselves are not checked (quick
sizes on a shared machine mean nothing).

Two lanes run side by side: scaling (two deployments, the longest) and idle, and the others one
after another."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.bench.cluster import REPO
from tests.support.processes import finished

COMMON = {"benchmark", "quick", "started_at", "seconds", "machine", "tables"}
KEYS = {
    "insert": {"baseline", "levels", "fixed_rate", "peak", "targets", "api_processes"},
    "e2e": {"scenarios", "burst", "workers", "poll_ms", "target_p95_ms"},
    "reads": {"reads", "explain", "engine_ms", "seeded_tables", "seeding"},
    "writer": {
        "records",
        "rows",
        "writer_rows_per_s",
        "consume_only_records_per_s",
        "insert_only_rows_per_s",
        "target_rows_per_s",
    },
    "scaling": {"done", "runs", "summary"},
    "flush": {"sizes", "throughput", "sync_flush", "targets"},
    "idle": {"dev", "split"},
}
LANES = (("scaling", "idle"), ("insert", "flush", "e2e", "reads", "writer"))
TIMEOUT = 300  # seconds for one benchmark; the two lanes take 1 to 1.5 min on the shared 2-core machine


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


async def _quick(name: str, out: Path) -> tuple[int, str]:
    status, output, _ = await finished(
        sys.executable,
        "-m",
        f"scripts.bench.{name}",
        "--quick",
        "--out",
        str(out),
        timeout=TIMEOUT,
        cwd=REPO,
        stderr=asyncio.subprocess.STDOUT,
    )
    return status, output.decode(errors="replace")


@pytest.fixture(scope="module")
async def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    out = tmp_path_factory.mktemp("bench")
    done: dict[str, tuple[int, str, Path]] = {}

    async def lane(names: tuple[str, ...]) -> None:
        for name in names:
            done[name] = (*await _quick(name, out / f"{name}.json"), out / f"{name}.json")

    await asyncio.gather(*(lane(names) for names in LANES))
    return done


@pytest.mark.parametrize("name", sorted(KEYS))
def test_quick_mode_prints_tables_and_writes_json(runs: dict[str, tuple[int, str, Path]], name: str) -> None:
    code, output, path = runs[name]
    assert code == 0, output[-3000:]
    report = json.loads(path.read_text(), parse_constant=_reject_constant)
    assert COMMON | KEYS[name] <= report.keys(), sorted(COMMON | KEYS[name] - report.keys())
    assert report["benchmark"] == name and report["quick"] is True
    assert {"nproc", "cpu_model", "ram_gib"} <= report["machine"].keys()
    assert report["tables"], "no table"
    for table in report["tables"]:
        assert table["rows"], f"table {table['title']!r} is empty"
        assert table["title"] in output, f"table {table['title']!r} was not printed"
        assert all(column in output for column in table["columns"])
    assert f"wrote {path}" in output
