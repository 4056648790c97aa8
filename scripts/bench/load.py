"""Load generation against the API: closed loop (N requests in flight) and open loop (a fixed rate).

The generator runs in the benchmark's own process, the API in its child processes, so client
and server never share an event loop. A call is ``async def () -> bool`` (True: answered OK);
an exception counts as an error too. Open-loop latency is measured from each request's
*scheduled* start, so a stalled server is charged for the requests that queue behind it
(no coordinated omission).
"""

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from scripts.bench.cluster import TOKEN
from scripts.bench.harness import latency_ms

Call = Callable[[], Awaitable[bool]]


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls only
    errors: int = 0
    first_error: str | None = None
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        summary = {
            "requests": len(self.latencies) + self.errors,
            "req_per_s": round(self.rate, 1),
            **latency_ms(self.latencies),
            "errors": self.errors,
        }
        return {**summary, "first_error": self.first_error} if self.errors else summary


async def _timed(call: Call, start: float, result: LoadResult) -> None:
    try:
        ok, error = await call(), "answered with an error"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        ok, error = False, repr(exc)
    if ok:
        result.latencies.append(time.perf_counter() - start)
    else:
        result.errors += 1
        result.first_error = result.first_error or error


async def closed_loop(call: Call, concurrency: int, duration: float) -> LoadResult:
    """``concurrency`` workers, each sending its next request when the last one is answered."""
    result = LoadResult()
    begin = time.perf_counter()
    stop = begin + duration

    async def worker() -> None:
        while (now := time.perf_counter()) < stop:
            await _timed(call, now, result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - begin
    return result


async def open_loop(call: Call, rate: float, count: int) -> LoadResult:
    """``count`` requests started at ``rate`` per second whatever the answers; waits for all of them."""
    result = LoadResult()
    begin = time.perf_counter()
    tasks = []
    for i in range(count):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_timed(call, scheduled, result)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - begin
    return result


async def for_each(items: Iterable[Any], call: Callable[[Any], Awaitable[bool]], concurrency: int) -> LoadResult:
    """``call(item)`` for every item, ``concurrency`` at a time."""
    pending = iter(items)
    result = LoadResult()
    begin = time.perf_counter()

    async def worker() -> None:
        for item in pending:
            await _timed(lambda: call(item), time.perf_counter(), result)  # noqa: B023 - awaited in this iteration

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - begin
    return result


def user_ids(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct, reproducible user ids (UUIDs, as the API requires)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


class ApiClient:
    """One keep-alive HTTP session over one or more API processes (round-robin), as the root project."""

    def __init__(self, urls: list[str], connections: int = 128) -> None:
        self._urls = itertools.cycle(urls)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[bool, bytes]:
        """(answered with errno 0, body). The envelope is checked on the raw bytes: parsing every
        answer would make the client, not the server, the thing measured."""
        async with self._session.request(method, next(self._urls) + path, data=body) as response:
            raw = await response.read()
            return response.status == 200 and b'"errno": 0' in raw, raw

    async def close(self) -> None:
        await self._session.close()
