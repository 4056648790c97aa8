"""Idle: how much CPU Memstream uses with nothing to do, every process counted.

Two topologies, each after a warm-up (one insert, one sync flush, one profile read), then
``seconds`` of nothing: ``memstream dev`` (one process, plus its local broker and the broker's
proxy), and separate ``memstream api`` + ``memstream worker`` processes sharing ClickHouse through
the chDB HTTP front (plus broker and proxy). CPU is read from /proc (user + system time); 1.0 is
one core all the time. The target: under 2 % of one core for all of ``memstream dev``'s
processes together.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from scripts.bench import harness
from scripts.bench.cluster import REPO, TOKEN, Services, cpu_seconds, with_cpu
from scripts.bench.harness import Table
from scripts.bench.load import ApiClient, user_ids
from scripts.broker import free_port, wait_for_port

TARGET_CORES = 0.02
CHAT = b'{"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": "My name is Ida."}]}}'


async def warm_up(urls: list[str]) -> None:
    client = ApiClient(urls)
    try:
        user = user_ids(1, seed=21)[0]
        for method, path, body in (
            ("POST", f"/blobs/insert/{user}", CHAT),
            ("POST", f"/users/buffer/{user}/chat?wait_process=true", None),
            ("GET", f"/users/profile/{user}", None),
        ):
            ok, raw = await client.request(method, path, body)
            if not ok:
                raise RuntimeError(f"warm-up {method} {path} failed: {raw[:300]!r}")
    finally:
        await client.close()


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the dev process starts the broker and its proxy)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            kids = [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except OSError:
            kids = []
        found += kids
        frontier += kids
    return found


async def dev(workdir: Path, seconds: float) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "MEMSTREAM_ROOT_TOKEN": TOKEN, "MEMSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    # A benchmark starting the process it measures: blocking for a moment here delays nothing measured.
    log = open(workdir / "dev.log", "ab")  # noqa: ASYNC230 - the child process's stdout
    process = subprocess.Popen(  # noqa: ASYNC220 - see above
        [
            sys.executable,
            "-c",
            "from memstream.cli import main; main()",
            "dev",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "dev"),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 120)
        url = f"http://127.0.0.1:{port}/api/v1"
        async with aiohttp.ClientSession() as session:  # up once the healthcheck answers 200
            deadline = time.monotonic() + 60
            while (await session.get(f"{url}/healthcheck")).status != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError("memstream dev did not become healthy")
                await asyncio.sleep(0.2)
        await warm_up([url])
        pids = {"memstream_dev": process.pid, **{f"child_{pid}": pid for pid in children(process.pid)}}
        before, clock = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - clock
        used = {name: (cpu_seconds(pid) - before[name]) / elapsed for name, pid in pids.items()}
        return {
            "seconds": round(elapsed, 1),
            "processes": len(pids),
            "total_cores": round(sum(used.values()), 4),
            "memstream_cores": round(used["memstream_dev"], 4),
            "broker_and_proxy_cores": round(sum(v for k, v in used.items() if k != "memstream_dev"), 4),
            "target_cores": TARGET_CORES,
            "met": sum(used.values()) < TARGET_CORES,
        }
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()


async def split(workdir: Path, seconds: float) -> dict[str, Any]:
    async with Services(workdir, api=1, workers=1) as services:
        await warm_up(services.urls)
        _, cpu = await with_cpu(services, asyncio.sleep(seconds))
    cpu.pop("client_cpu", None)
    return {"seconds": seconds, **{k: round(v, 4) for k, v in cpu.items()}, "total_cores": round(sum(cpu.values()), 4)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 5.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory(prefix="memstream-bench-idle-") as tmp:
        (Path(tmp) / "dev").mkdir()
        (Path(tmp) / "split").mkdir()
        dev_result = await dev(Path(tmp), seconds)
        split_result = await split(Path(tmp) / "split", seconds)
    tables = [
        Table(
            f"Idle memstream dev over {seconds:g} s (cores; target < {TARGET_CORES:g})", list(dev_result), [dev_result]
        ),
        Table(f"Idle api + worker processes over {seconds:g} s (cores)", list(split_result), [split_result]),
    ]
    return {"dev": dev_result, "split": split_result, "tables": tables}


def cli() -> None:
    harness.main("idle", run, harness.parser("idle", __doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    cli()
