"""End to end: insert → size-triggered flush → extraction (scripted LLM, answers at once) → profile
readable through the API.

    generator ──POST insert──▶ api ─▶ ingest ─▶ worker: owner (window closes) ─▶ job ──HTTP──▶ LLM (here)
        └────GET /users/profile, every 50 ms, until the sample's slot is there ◀── ClickHouse ◀── projection writer

API and workers are separate ``memstream`` processes sharing ClickHouse through the chDB HTTP
front. Each sample is a chat blob carrying a unique marker and enough tokens to close the
user's buffer by size; the scripted LLM turns each marker into a slot, and the sample's latency
runs from sending the insert to the first profile read that shows that slot (so it is at most
one poll interval late). Samples start at a fixed rate, round-robin over the scenario's users,
each of whom first gets a small blob that stays buffered (an open window per user: 10,000 users
means 10,000 live buffers in the worker and 10,000 users in ClickHouse). At 10,000 users only
the first ``samples`` users are sampled, to keep the run bounded.

Then a burst: ``burst`` flush-triggering inserts as fast as the API takes them, timed until every
one's task has finished and the projection writer has written all it produced: the pipeline's
throughput in flushes per second.
"""

import argparse
import asyncio
import contextlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from memstream.settings import Settings
from scripts.bench import harness
from scripts.bench.cluster import FinishedTasks, Services, idle_cpu, wait_caught_up
from scripts.bench.harness import Table, below, latency_ms
from scripts.bench.load import ApiClient, for_each, open_loop, user_ids
from scripts.scripted_llm import ScriptedLLM

TARGET_P95_MS = 1000.0
POLL = 0.05  # seconds between profile reads of one sample
TOKENS_TO_FLUSH = 64  # max_chat_blob_buffer_token_size for the run; a sample blob has more
FILLER = " ".join(["We talked about trains, the weather in Lisbon, jazz records and a long walk by the river."] * 5)
MARKER = re.compile(r"bench-marker-([0-9a-f]{32})")


class MarkerLLM(ScriptedLLM):
    """Answers each extraction with one slot per marker in the request: ``bench::sample_<marker>``."""

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        markers = MARKER.findall(body["messages"][-1]["content"])
        changes = [{"op": "add", "topic": "bench", "sub_topic": f"sample_{m[:12]}", "content": m} for m in markers]
        # The parent pops the scripted reply without yielding (the body is already read), so
        # concurrent requests cannot take each other's answers.
        self.script({"changes": changes, "event_tip": f"benchmark sample ({len(markers)} markers)"})
        return await super()._chat(request)


@dataclass(frozen=True)
class Sizes:
    scenarios: tuple[tuple[int, int], ...]  # (users, samples)
    rate: float  # samples started per second
    burst: int
    timeout: float  # seconds a sample may take to become visible
    idle_seconds: float = 3.0


FULL = Sizes(((1, 60), (100, 100), (10_000, 100)), 5.0, 500, 30.0)
QUICK = Sizes(((5, 3),), 10.0, 5, 20.0, 0.5)


def sample_body(marker: str) -> bytes:
    text = f"bench-marker-{marker} {FILLER}"
    return json.dumps({"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": text}]}}).encode()


PRELOAD_BODY = json.dumps(
    {"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": "Hello!"}]}}
).encode()


class Sampler:
    """Sends samples and watches for them through one API client."""

    def __init__(self, services: Services, timeout: float) -> None:
        self.client = ApiClient(services.urls)
        self.timeout = timeout
        self.timeouts = 0

    async def sample(self, user: str) -> bool:
        """One insert, then profile reads until its slot shows; False on an error or a timeout."""
        marker = uuid.uuid4().hex
        ok, _ = await self.client.request("POST", f"/blobs/insert/{user}", sample_body(marker))
        if not ok:
            return False
        deadline = time.perf_counter() + self.timeout
        while time.perf_counter() < deadline:
            await asyncio.sleep(POLL)
            ok, raw = await self.client.request("GET", f"/users/profile/{user}")
            if ok and marker.encode() in raw:
                return True
        self.timeouts += 1
        return False

    async def preload(self, users: list[str]) -> None:
        """A small blob for each user, left in the user's buffer."""

        async def insert(user: str) -> bool:
            return (await self.client.request("POST", f"/blobs/insert/{user}", PRELOAD_BODY))[0]

        result = await for_each(users, insert, 32)
        if result.errors:
            raise RuntimeError(f"{result.errors} preload inserts failed")

    async def close(self) -> None:
        await self.client.close()


async def caught_up(settings: Settings) -> None:
    """Wait until the workers have taken every command so far and the writer has projected what they made."""
    await wait_caught_up(settings, settings.app_id, [settings.topic_ingest])
    await wait_caught_up(settings, settings.projection_group, [settings.topic_memory])


async def scenario(services: Services, sampler: Sampler, users: list[str], samples: int, rate: float) -> dict[str, Any]:
    clock = time.monotonic()
    await sampler.preload(users)
    await caught_up(services.settings)
    preload_s = time.monotonic() - clock
    turn = iter(range(samples))
    sampler.timeouts = 0
    result = await open_loop(lambda: sampler.sample(users[next(turn) % len(users)]), rate, samples)
    stats = latency_ms(result.latencies)
    return {
        "users": len(users),
        "samples": samples,
        "visible": len(result.latencies),
        "timeouts": sampler.timeouts,
        "errors": result.errors - sampler.timeouts,
        **stats,
        "p95_target_met": below(stats["p95_ms"], TARGET_P95_MS) and result.errors == 0,
        "preload_s": round(preload_s, 1),
    }


async def burst(services: Services, sampler: Sampler, flushes: int) -> dict[str, Any]:
    """``flushes`` flush-triggering inserts at once, each for a new user: flushes per second, insert to projected."""
    async with FinishedTasks(services.settings) as tasks:
        clock = time.monotonic()

        async def insert(user: str) -> bool:
            ok, raw = await sampler.client.request("POST", f"/blobs/insert/{user}", sample_body(uuid.uuid4().hex))
            if ok:
                tasks.watched.add(json.loads(raw)["data"]["task_id"])
            return ok

        inserts = await for_each(user_ids(flushes, seed=flushes), insert, 32)
        if inserts.errors:
            raise RuntimeError(f"{inserts.errors} burst inserts failed")
        inserted = time.monotonic() - clock
        await tasks.wait(flushes, timeout=600)
    extracted = time.monotonic() - clock
    await wait_caught_up(services.settings, services.settings.projection_group, [services.settings.topic_memory])
    projected = time.monotonic() - clock
    return {
        "flushes": flushes,
        "inserted_s": round(inserted, 2),
        "extracted_s": round(extracted, 2),
        "projected_s": round(projected, 2),
        "flushes_per_s": round(flushes / projected, 1),
    }


async def measure(services: Services, sizes: Sizes, llm: MarkerLLM) -> dict[str, Any]:
    """Warm up (one sample, generous timeout), the latency scenarios, then the burst."""
    sampler = Sampler(services, sizes.timeout)
    try:
        warm = Sampler(services, 120.0)
        warmed = await warm.sample(user_ids(1, seed=0)[0])
        await warm.close()
        if not warmed:
            raise RuntimeError("the warm-up sample never became visible; see the process logs")
        idle = await idle_cpu(services, sizes.idle_seconds)
        seed = 1
        rows = []
        for users, samples in sizes.scenarios:
            rows.append(await scenario(services, sampler, user_ids(users, seed=seed), samples, sizes.rate))
            seed += 1
            services.check_alive()
        throughput = await burst(services, sampler, sizes.burst)
    finally:
        await sampler.close()
    return {"idle_cpu": idle, "scenarios": rows, "burst": throughput, "llm_requests": len(llm.requests)}


@contextlib.asynccontextmanager
async def pipeline(workdir: Path, api: int, workers: int) -> AsyncIterator[tuple[Services, MarkerLLM]]:
    """The scripted LLM, then ``api`` API and ``workers`` worker processes configured for size flushes."""
    llm = MarkerLLM()
    await llm.start()
    try:
        async with Services(
            workdir,
            api=api,
            workers=workers,
            llm_base_url=llm.base_url,
            max_chat_blob_buffer_token_size=TOKENS_TO_FLUSH,
        ) as services:
            yield services, llm
    finally:
        await llm.stop()


def tables(result: dict[str, Any], sizes: Sizes, workers: int) -> list[Table]:
    return [
        Table(
            f"Insert → visible in GET /users/profile, {sizes.rate:g} samples/s, {workers} worker(s), poll {POLL * 1000:g} ms",
            [
                "users",
                "samples",
                "visible",
                "timeouts",
                "errors",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "max_ms",
                "p95_target_met",
                "preload_s",
            ],
            result["scenarios"],
        ),
        Table(
            "Burst: flush-triggering inserts, insert → task finished → projected",
            ["flushes", "inserted_s", "extracted_s", "projected_s", "flushes_per_s"],
            [result["burst"]],
        ),
        Table(
            "Idle, after the warm-up sample (cores busy; the front is not counted)",
            list(result["idle_cpu"]),
            [result["idle_cpu"]],
        ),
    ]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="memstream-bench-e2e-") as tmp:
        async with pipeline(Path(tmp), 1, args.workers) as (services, llm):
            result = await measure(services, sizes, llm)
    return {
        "workers": args.workers,
        "sizes": sizes.__dict__,
        "poll_ms": POLL * 1000,
        "target_p95_ms": TARGET_P95_MS,
        **result,
        "tables": tables(result, sizes, args.workers),
    }


def cli() -> None:
    p = harness.parser("e2e", __doc__.splitlines()[0])
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes (the topics' partitions are split among them)"
    )
    harness.main("e2e", run, p.parse_args())


if __name__ == "__main__":
    cli()
