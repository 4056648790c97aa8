"""The API's copy of hot users' reads: what is kept, what a change drops, what a drop during a fill does."""

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from api.read_cache import CacheMetrics, Expiring, ReadCache, footprint


class Source:
    """A ClickHouse stand-in for one part: counts loads, and can hold a load until released."""

    def __init__(self, value: object) -> None:
        self.value, self.loads = value, 0
        self.gate: asyncio.Event | None = None

    async def load(self) -> object:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.value


def metrics() -> tuple[CacheMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    counters = (Counter(f"c_{n}", n, ("part",), registry=registry) for n in ("hits", "misses", "evictions", "drops"))
    return CacheMetrics(*counters, Gauge("c_bytes", "bytes", registry=registry)), registry


async def test_a_second_read_is_the_copy_until_the_user_changes() -> None:
    cache, source = ReadCache(2**20), Source([{"id": "a"}])
    assert await cache.get("p", "u", "slots", source.load) == [{"id": "a"}]
    assert await cache.get("p", "u", "slots", source.load) == [{"id": "a"}]
    assert source.loads == 1
    source.value = [{"id": "b"}]
    cache.changed(["p:other"])
    assert await cache.get("p", "u", "slots", source.load) == [{"id": "a"}]
    cache.changed(["p:u"])
    assert await cache.get("p", "u", "slots", source.load) == [{"id": "b"}]
    assert source.loads == 2


async def test_a_change_drops_every_part_of_the_user_and_changed_all_drops_everyone() -> None:
    cache = ReadCache(2**20)
    for part in ("slots", "events", "working"):
        await cache.get("p", "u", part, Source(part).load)  # type: ignore[arg-type]
    await cache.get("p", "v", "slots", Source("v").load)
    cache.changed(["p:u"])
    assert len(cache) == 1
    cache.changed_all()
    assert len(cache) == 0 and cache.size_bytes == 0


async def test_reads_that_miss_together_share_one_load() -> None:
    cache, source = ReadCache(2**20), Source("slots")
    source.gate = asyncio.Event()
    readers = [asyncio.ensure_future(cache.get("p", "u", "slots", source.load)) for _ in range(5)]
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*readers) == ["slots"] * 5
    assert source.loads == 1


async def test_a_change_during_a_load_is_not_hidden_by_it() -> None:
    cache, source = ReadCache(2**20), Source("old")
    source.gate = asyncio.Event()
    reader = asyncio.ensure_future(cache.get("p", "u", "slots", source.load))
    await asyncio.sleep(0)
    cache.changed(["p:u"])  # the user changed while ClickHouse was read: that answer may be older
    source.value = "new"
    late = asyncio.ensure_future(cache.get("p", "u", "slots", source.load))  # after the change: its own load
    await asyncio.sleep(0)
    source.gate.set()
    await reader
    assert await late == "new"
    assert await cache.get("p", "u", "slots", source.load) == "new"
    assert source.loads == 2


async def test_a_reader_that_goes_away_does_not_cancel_the_load_of_the_others() -> None:
    cache, source = ReadCache(2**20), Source("slots")
    source.gate = asyncio.Event()
    leaving = asyncio.ensure_future(cache.get("p", "u", "slots", source.load))
    staying = asyncio.ensure_future(cache.get("p", "u", "slots", source.load))
    await asyncio.sleep(0)
    leaving.cancel()
    source.gate.set()
    assert await staying == "slots"
    assert len(cache) == 1


async def test_a_failed_load_is_not_kept() -> None:
    cache = ReadCache(2**20)

    async def broken() -> object:
        raise ConnectionError("ClickHouse away")

    with pytest.raises(ConnectionError):
        await cache.get("p", "u", "slots", broken)
    assert len(cache) == 0
    assert await cache.get("p", "u", "slots", Source("back").load) == "back"


async def test_copies_stay_within_the_bound_least_recently_used_out() -> None:
    row = [{"content": "x" * 1000}]
    m, registry = metrics()
    cache = ReadCache(3 * (footprint(row) + footprint("slots")), m)
    for user in ("a", "b", "c"):
        await cache.get("p", user, "slots", Source(row).load)
    await cache.get("p", "a", "slots", Source(row).load)  # a is now the most recently used
    await cache.get("p", "d", "slots", Source(row).load)
    assert cache.size_bytes <= cache.max_bytes
    sources = {user: Source(row) for user in "abcd"}
    for user in "acd":
        await cache.get("p", user, "slots", sources[user].load)
    assert [sources[u].loads for u in "acd"] == [0, 0, 0]  # kept
    await cache.get("p", "b", "slots", sources["b"].load)
    assert sources["b"].loads == 1  # b was the least recently used: evicted
    assert (
        registry.get_sample_value("c_evictions_total", {"part": "slots"}) == 2
    )  # b, then a (the least recently used by then) for b
    assert registry.get_sample_value("c_bytes") == cache.size_bytes


async def test_a_copy_larger_than_the_bound_is_not_kept() -> None:
    cache, source = ReadCache(100), Source(["y" * 1000])
    await cache.get("p", "u", "slots", source.load)
    await cache.get("p", "u", "slots", source.load)
    assert source.loads == 2 and len(cache) == 0


async def test_an_answer_that_depends_on_the_clock_is_kept_until_its_time() -> None:
    cache = ReadCache(2**20)
    lasting, lapsed = Source(Expiring("lasting", time.time() + 3600)), Source(Expiring("lapsed", time.time() - 1))
    for _ in range(2):
        assert await cache.get("p", "u", "context?a", lasting.load) == "lasting"
        assert await cache.get("p", "u", "context?b", lapsed.load) == "lapsed"
    assert (lasting.loads, lapsed.loads) == (1, 2)
    assert len(cache) == 2  # the lapsed one replaced, not doubled
    cache.changed(["p:u"])
    assert len(cache) == 0 and cache.size_bytes == 0
