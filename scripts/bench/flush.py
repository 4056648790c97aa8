"""Flushes: how many a worker extracts per second with a slow LLM, and how long a sync flush takes.

    generator ──POST flush (200 users at once)──▶ api ─▶ ingest ─▶ worker: owner ─▶ jobs ──▶ LLM (here, 800 ms)
        └── a read_committed tail of the memory topic notes each TaskFinished ◀──────────────────┘

**Throughput.** ``users`` users get ``blobs`` chat blobs each (buffered, below the size trigger),
then every user's flush is requested at once; timed from the first request until every flush's
task has finished (its TaskFinished fact is committed), with a scripted LLM that answers after
``llm_ms``. Reported: flushes per second, the most LLM calls in flight at once, and LLM calls per
flush. The in-run baseline is what one extraction at a time would do with the same LLM
(``1 / latency``), and the ceiling is ``MEMSTREAM_EXTRACT_CONCURRENCY / latency``.

**Sync flush.** For ``sync_samples`` users, one after another: ``blobs`` blobs, then
``POST /users/buffer/{uid}/chat?wait_process=true`` with an LLM that answers at once; the call's
latency is what is reported, with a baseline of the same users' plain inserts in the same run.
A profile read right after each sync flush checks that the call returned once the result was
readable.

One API and one worker process, sharing ClickHouse through the chDB HTTP front.
"""

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench import harness
from scripts.bench.cluster import FinishedTasks, Services
from scripts.bench.harness import Table, latency_ms, ratio
from scripts.bench.load import ApiClient, for_each, user_ids
from scripts.scripted_llm import ScriptedLLM

TARGET_FLUSHES_PER_S = 50.0
TARGET_SYNC_P95_MS = 75.0
MEMOBASE_FLUSHES_PER_S = (10.0, 12.7)
MEMOBASE_SYNC_P95_MS = (90.0, 114.0)


@dataclass(frozen=True)
class Sizes:
    users: int
    blobs: int
    llm_ms: float
    sync_samples: int


FULL = Sizes(users=200, blobs=3, llm_ms=800.0, sync_samples=200)
QUICK = Sizes(users=10, blobs=3, llm_ms=200.0, sync_samples=10)


class AnsweringLLM(ScriptedLLM):
    """Answers every extraction with one slot named after the request's position."""

    def reply_to(self, body: dict[str, Any]) -> str:
        n = len(self.requests)
        return json.dumps(
            {
                "changes": [{"op": "add", "topic": "work", "sub_topic": "title", "content": f"pilot {n}"}],
                "event_tip": f"flight {n}",
            }
        )


def blob(user: str, n: int) -> bytes:
    text = f"Blob {n} of {user[:8]}: I flew to Lisbon and back."
    return json.dumps({"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": text}]}}).encode()


async def throughput(services: Services, client: ApiClient, llm: AnsweringLLM, sizes: Sizes) -> dict[str, Any]:
    users = user_ids(sizes.users, seed=11)
    inserts = await for_each(
        [(u, n) for u in users for n in range(sizes.blobs)],
        lambda un: _ok(client, "POST", f"/blobs/insert/{un[0]}", blob(*un)),
        32,
    )
    if inserts.errors:
        raise RuntimeError(f"{inserts.errors} inserts failed")
    llm.delay, llm.max_in_flight, asked = sizes.llm_ms / 1000, 0, len(llm.requests)
    async with FinishedTasks(services.settings) as tasks:
        clock = time.monotonic()

        async def flush(user: str) -> bool:
            ok, raw = await client.request("POST", f"/users/buffer/{user}/chat")
            if ok:
                tasks.watched.add(json.loads(raw)["task_id"])
            return ok

        requested = await for_each(users, flush, len(users))
        requested_s = time.monotonic() - clock
        await tasks.wait(len(users) - requested.errors, timeout=600)
        finished = [tasks.finished[t] for t in tasks.watched]
    done_s = max(finished) - clock
    calls = len(llm.requests) - asked
    latency = sizes.llm_ms / 1000
    return {
        "users": len(users),
        "blobs_per_user": sizes.blobs,
        "llm_ms": sizes.llm_ms,
        "errors": requested.errors,
        "requested_s": round(requested_s, 2),
        "finished_s": round(done_s, 2),
        "flushes_per_s": round(len(finished) / done_s, 1),
        "max_llm_in_flight": llm.max_in_flight,
        "llm_calls_per_flush": round(calls / max(1, len(finished)), 2),
        "one_at_a_time_flushes_per_s": round(1 / latency, 2),
        "ceiling_flushes_per_s": round(services.settings.extract_concurrency / latency, 1),
        "over_one_at_a_time": ratio(len(finished) / done_s, 1 / latency),
    }


async def _ok(client: ApiClient, method: str, path: str, body: bytes | None = None) -> bool:
    return (await client.request(method, path, body))[0]


async def sync_flushes(client: ApiClient, llm: AnsweringLLM, sizes: Sizes) -> dict[str, Any]:
    llm.delay = 0.0
    inserts: list[float] = []
    flushes: list[float] = []
    stale = 0
    for user in user_ids(sizes.sync_samples, seed=12):
        for n in range(sizes.blobs):
            clock = time.monotonic()
            if not await _ok(client, "POST", f"/blobs/insert/{user}", blob(user, n)):
                raise RuntimeError("an insert failed")
            inserts.append(time.monotonic() - clock)
        clock = time.monotonic()
        ok, raw = await client.request("POST", f"/users/buffer/{user}/chat?wait_process=true")
        flushes.append(time.monotonic() - clock)
        if not ok or json.loads(raw)["errno"] != 0:
            raise RuntimeError(f"a sync flush failed: {raw[:300]!r}")
        ok, raw = await client.request("GET", f"/users/profile/{user}")
        stale += not (ok and b"pilot" in raw)
    flush_stats, insert_stats = latency_ms(flushes), latency_ms(inserts)
    return {
        "samples": len(flushes),
        "blobs_per_flush": sizes.blobs,
        **flush_stats,
        "insert_p50_ms": insert_stats["p50_ms"],
        "insert_p95_ms": insert_stats["p95_ms"],
        "flush_over_insert_p95": ratio(flush_stats["p95_ms"], insert_stats["p95_ms"]),
        "profile_read_missing_the_result": stale,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    llm = AnsweringLLM()
    await llm.start()
    try:
        with tempfile.TemporaryDirectory(prefix="memstream-bench-flush-") as tmp:
            async with Services(
                Path(tmp), api=1, workers=1, llm_base_url=llm.base_url, max_chat_blob_buffer_token_size=100_000
            ) as services:
                client = ApiClient(services.urls)
                try:
                    sync = await sync_flushes(client, llm, sizes)
                    burst = await throughput(services, client, llm, sizes)
                finally:
                    await client.close()
    finally:
        await llm.stop()
    targets = [
        {
            "target": f"flushes/s ≥ {TARGET_FLUSHES_PER_S:g} ({sizes.llm_ms:g} ms LLM)",
            "measured": burst["flushes_per_s"],
            "met": burst["flushes_per_s"] >= TARGET_FLUSHES_PER_S,
            "memobase": f"{MEMOBASE_FLUSHES_PER_S[0]:g}–{MEMOBASE_FLUSHES_PER_S[1]:g}",
        },
        {
            "target": f"sync flush p95 < {TARGET_SYNC_P95_MS:g} ms",
            "measured": sync["p95_ms"],
            "met": sync["p95_ms"] < TARGET_SYNC_P95_MS,
            "memobase": f"{MEMOBASE_SYNC_P95_MS[0]:g}–{MEMOBASE_SYNC_P95_MS[1]:g}",
        },
    ]
    tables = [
        Table(
            f"Throughput: {burst['users']} users' flushes at once, {sizes.blobs} blobs each, LLM {sizes.llm_ms:g} ms",
            list(burst),
            [burst],
        ),
        Table(
            f"Sync flush of {sizes.blobs} blobs, LLM answering at once (baseline: the inserts before it)",
            list(sync),
            [sync],
        ),
        Table(
            "Targets (Memobase 0.0.42 on this kind of machine, same LLM)",
            ["target", "measured", "met", "memobase"],
            targets,
        ),
    ]
    return {"sizes": sizes.__dict__, "throughput": burst, "sync_flush": sync, "targets": targets, "tables": tables}


def cli() -> None:
    harness.main("flush", run, harness.parser("flush", __doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    cli()
