"""Prometheus metrics of one process (``GET /metrics``): one ``CollectorRegistry`` per ``Stack``,
never the global default one, so several stacks in one process (the tests) count apart.

The parts report through small hooks: the API's middleware (requests, insert and read latency),
the extractor and embedder (``streams.observe.CallObserver``: calls, latency, tokens), the owner
stage (extraction slots in use, tasks finished once committed). What the process does not count
itself is read at scrape time from sources the stack hands over (``watch``): consumer and
projection lag from the broker and dead letters from ClickHouse, cached for ``CACHE_SECONDS`` so a
scrape does not hammer either, and the buffers open per partition, which the owner knows.

The worker, which serves no API, exposes the same text on its own port (``serve``).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.read_cache import CacheMetrics
from streams.runtime.lag import PartitionLag

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0  # how long lag and dead letters read for one scrape serve the next ones
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

LagSource = Callable[[], Awaitable[Mapping[str, Iterable[PartitionLag]]]]
DeadLetterSource = Callable[[], Awaitable[list[dict[str, Any]]]]
BufferSource = Callable[[], Mapping[int, int]]


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"memstream_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"memstream_{name}", doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"memstream_{name}", doc, labels, registry=registry, buckets=buckets)

        self.http_requests = counter("http_requests", "HTTP requests answered", ("method", "route", "status"))
        self.insert_seconds = histogram(
            "insert_seconds", "Time to answer an insert (blob or MemOS message)", ("route",), LATENCY_BUCKETS
        )
        self.read_seconds = histogram("read_seconds", "Time to answer a read", ("route",), LATENCY_BUCKETS)
        self.tasks_finished = counter("tasks_finished", "Tasks ended by the owner, once committed", ("status",))
        self.llm_calls = counter("llm_calls", "LLM chat completions", ("model", "outcome"))
        self.llm_seconds = histogram("llm_call_seconds", "Time of one LLM call", ("model",), LLM_BUCKETS)
        self.llm_tokens = counter("llm_tokens", "Tokens the LLM endpoint reported", ("model", "kind"))
        self.embedding_calls = counter("embedding_calls", "Embeddings calls", ("model", "outcome"))
        self.embedding_texts = counter("embedding_texts", "Texts sent to be embedded", ("model",))
        self.embedding_seconds = histogram(
            "embedding_call_seconds", "Time of one embeddings call", ("model",), LATENCY_BUCKETS
        )
        self.extraction_slots = gauge("extraction_slots", "Jobs a worker may run at once (extract concurrency)")
        self.extraction_slots_in_use = gauge("extraction_slots_in_use", "Jobs (extractions, embeddings) running")
        self.consumer_lag = gauge(
            "consumer_lag", "Records a consumer group has yet to read", ("group", "topic", "partition")
        )
        self.projection_lag = gauge("projection_lag", "Records the projection writers have yet to write")
        self.dead_letters = gauge("dead_letters", "Dead letters by reason (the most frequent 50)", ("kind", "reason"))
        self.buffers_open = gauge("buffers_open", "Users with an open buffer window", ("partition",))
        self.read_cache = CacheMetrics(
            hits=counter("read_cache_hits", "Reads answered from the API's copy of a user's memory", ("part",)),
            misses=counter("read_cache_misses", "Reads that asked ClickHouse", ("part",)),
            evictions=counter(
                "read_cache_evictions", "Copies dropped to stay within MEMSTREAM_READ_CACHE_MB", ("part",)
            ),
            drops=counter("read_cache_drops", "Copies dropped because the writer wrote the user again", ("part",)),
            size=gauge("read_cache_bytes", "Estimated bytes of the copies held"),
        )
        self.source_errors = counter("metrics_source_errors", "Scrapes whose source could not be read", ("source",))
        self._lags: LagSource | None = None
        self._projection_group = ""
        self._dead_letters: DeadLetterSource | None = None
        self._buffers: BufferSource | None = None
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    # --- hooks --------------------------------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float, kind: str | None) -> None:
        """One HTTP request answered; ``kind`` "insert" or "read" also times it."""
        self.http_requests.labels(method, route, str(status)).inc()
        if kind == "insert":
            self.insert_seconds.labels(route).observe(seconds)
        elif kind == "read":
            self.read_seconds.labels(route).observe(seconds)

    def llm_call(self, model: str, ok: bool, seconds: float, input_tokens: int, output_tokens: int) -> None:
        self.llm_calls.labels(model, "ok" if ok else "error").inc()
        self.llm_seconds.labels(model).observe(seconds)
        self.llm_tokens.labels(model, "input").inc(input_tokens)
        self.llm_tokens.labels(model, "output").inc(output_tokens)

    def embeddings_call(self, model: str, ok: bool, seconds: float, texts: int) -> None:
        self.embedding_calls.labels(model, "ok" if ok else "error").inc()
        self.embedding_texts.labels(model).inc(texts)
        self.embedding_seconds.labels(model).observe(seconds)

    def extraction_slot(self) -> AbstractContextManager[Any]:
        """Held while a job runs in one of the worker's slots."""
        return self.extraction_slots_in_use.track_inprogress()

    def finished(self, status: str, tasks: int) -> None:
        self.tasks_finished.labels(status).inc(tasks)

    # --- read at scrape time ---------------------------------------------------------------------

    def watch(
        self,
        *,
        lags: LagSource | None = None,
        projection_group: str = "",
        dead_letters: DeadLetterSource | None = None,
        buffers: BufferSource | None = None,
    ) -> None:
        self._lags, self._projection_group = lags, projection_group
        self._dead_letters, self._buffers = dead_letters, buffers

    async def scrape(self) -> bytes:
        """The registry in Prometheus's text format, the cached sources read again when stale."""
        async with self._lock:  # scrapes at once share one read of the sources
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= CACHE_SECONDS:
                self._read_at = now
                await self._read_lags()
                await self._read_dead_letters()
            self._read_buffers()
        return generate_latest(self.registry)

    async def _read_lags(self) -> None:
        if self._lags is None:
            return
        try:
            groups = await self._lags()
        except Exception as exc:  # noqa: BLE001 - the broker away: the last values stay, the error is counted
            log.warning("metrics: cannot read the consumer lag: %s: %s", type(exc).__name__, exc)
            self.source_errors.labels("lag").inc()
            return
        self.consumer_lag.clear()
        behind = 0
        for group, rows in groups.items():
            for row in rows:
                self.consumer_lag.labels(group, row.topic, str(row.partition)).set(row.lag)
                if group == self._projection_group:
                    behind += row.lag
        self.projection_lag.set(behind)

    async def _read_dead_letters(self) -> None:
        if self._dead_letters is None:
            return
        try:
            reasons = await self._dead_letters()
        except Exception as exc:  # noqa: BLE001 - ClickHouse away: the last values stay, the error is counted
            log.warning("metrics: cannot read the dead letters: %s: %s", type(exc).__name__, exc)
            self.source_errors.labels("dead_letters").inc()
            return
        self.dead_letters.clear()
        for row in reasons:
            self.dead_letters.labels(row["kind"], row["reason"]).set(row["count"])

    def _read_buffers(self) -> None:
        if self._buffers is None:
            return
        self.buffers_open.clear()
        for partition, count in sorted(self._buffers().items()):
            self.buffers_open.labels(str(partition)).set(count)


async def response(metrics: Metrics) -> web.Response:
    """A scrape's answer."""
    return web.Response(body=await metrics.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """The worker's own ``GET /metrics`` (no token: bind it where only the scraper reaches)."""

    async def handler(request: web.Request) -> web.Response:
        return await response(metrics)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
