"""Run every benchmark, one after another, each in its own process (each owns its chDB and
broker, and nothing of one run can load the next): ``python -m scripts.bench.all [--quick]``."""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.harness import RESULTS

BENCHMARKS = ("idle", "insert", "flush", "e2e", "reads", "writer", "scaling")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m scripts.bench.all", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every benchmark in its --quick mode")
    p.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the JSON files go (default: scripts/bench/results)"
    )
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS, help="a subset, in this order")
    args = p.parse_args()
    failed = []
    for name in args.only:
        out = args.out_dir / f"{name}{'-quick' if args.quick else ''}.json"
        command = [sys.executable, "-m", f"scripts.bench.{name}", "--out", str(out)] + (
            ["--quick"] if args.quick else []
        )
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        clock = time.monotonic()
        if subprocess.run(command).returncode:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - clock:.0f}s", flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
