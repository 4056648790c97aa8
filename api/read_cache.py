"""Hot users' read models, in the API process: a copy of what the profile and context reads
fetch from ClickHouse, and of the answers made from it, kept exact by the projection writer's
progress records.

Each part of a user's memory — the profile slots, the newest events, the unprocessed chats, and
answers made of them only (``profile?<params>``, ``context?<params>``, as JSON) — is fetched or
made on its first read and served from memory after that, until the writer says it wrote that
user again (or, for an answer that depends on the clock, until its time). The writer's progress record for a memory partition names the
users whose facts the batch held (``changed``; ``changed_all`` when it could not list them), and
``api.positions.Positions`` hands those names here *before* it moves the positions the record
carries. So when a read has waited for its position (``Consistency.settled``), every change of
its user that ClickHouse holds up to there has already dropped the user's copy:

- a copy is filled by a query that starts after every drop before it, so it holds at least what
  ClickHouse held then;
- a drop that arrives while a fill is under way discards that fill (it is not kept, and later
  reads start a new one), so no copy older than a drop outlives it.

Reads of one user that miss at the same time share one fill. The copies are bounded by an
estimate of their size in bytes (``MEMSTREAM_READ_CACHE_MB``), least recently used first out.
"""

import asyncio
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Counter, Gauge

from streams.records import user_key

Slot = tuple[str, str]  # (user key "project:user", part)


def footprint(value: Any) -> int:
    """Bytes ``value`` takes in this process, estimated: containers and their contents, shared
    objects counted at each use (so the estimate errs high)."""
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(footprint(k) + footprint(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sys.getsizeof(value) + sum(footprint(v) for v in value)
    return sys.getsizeof(value)


@dataclass(frozen=True)
class Expiring:
    """What a load returns when its value also depends on the clock: kept until ``until`` (epoch seconds)."""

    value: Any
    until: float


@dataclass(frozen=True)
class CacheMetrics:
    hits: Counter
    misses: Counter
    evictions: Counter
    drops: Counter
    size: Gauge


@dataclass
class _Copy:
    value: Any
    size: int
    until: float | None


class ReadCache:
    def __init__(self, max_bytes: int, metrics: CacheMetrics | None = None) -> None:
        self.max_bytes = max_bytes
        self._copies: OrderedDict[Slot, _Copy] = OrderedDict()  # least recently used first
        self._filling: dict[Slot, asyncio.Task[Any]] = {}
        self._parts: dict[str, set[str]] = {}  # user key → parts copied or being filled
        self._bytes = 0
        self._metrics = metrics

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._copies)

    async def get(self, project_id: str, user_id: str, part: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The user's ``part`` (a read model's rows, or an answer made of them): the copy, or what
        ``load`` reads from ClickHouse (kept as the copy unless the user changed while it read;
        an ``Expiring`` answer is kept until its time)."""
        slot = (user_key(project_id, user_id).decode(), part)  # the key of the user's records
        kind = part.partition("?")[0]
        copy = self._copies.get(slot)
        if copy is not None and (copy.until is None or time.time() < copy.until):
            self._copies.move_to_end(slot)
            self._count("hits", kind)
            return copy.value
        self._count("misses", kind)
        fill = self._filling.get(slot)
        if fill is None:
            fill = asyncio.ensure_future(load())
            self._filling[slot] = fill
            self._parts.setdefault(slot[0], set()).add(part)
            fill.add_done_callback(lambda done: self._filled(slot, done))
        # shielded: a reader that goes away does not cancel the fill the others wait for
        value = await asyncio.shield(fill)
        return value.value if isinstance(value, Expiring) else value

    def changed(self, keys: Iterable[str]) -> None:
        """The writer wrote these users (``project:user``) again: drop their copies and fills."""
        for key in keys:
            for part in self._parts.pop(key, ()):
                self._filling.pop((key, part), None)
                self._drop((key, part))

    def changed_all(self) -> None:
        """The writer wrote users it did not name (or a progress record was missed): drop everything."""
        for slot in list(self._copies):
            self._drop(slot)
        self._filling.clear()
        self._parts.clear()

    def _drop(self, slot: Slot, why: Literal["drops", "evictions"] | None = "drops") -> None:
        copy = self._copies.pop(slot, None)
        if copy is not None:
            self._bytes -= copy.size
            if why is not None:
                self._count(why, slot[1].partition("?")[0])
            self._sized()

    def _forget_part(self, slot: Slot) -> None:
        parts = self._parts.get(slot[0])
        if parts is not None and slot not in self._filling and slot not in self._copies:
            parts.discard(slot[1])
            if not parts:
                del self._parts[slot[0]]

    def _filled(self, slot: Slot, fill: asyncio.Task[Any]) -> None:
        if self._filling.get(slot) is not fill:
            return  # dropped while it read: what it read may be older than the drop
        del self._filling[slot]
        if fill.cancelled() or fill.exception() is not None:
            self._forget_part(slot)
            return
        value, until = fill.result(), None
        if isinstance(value, Expiring):
            value, until = value.value, value.until
        size = footprint(value) + footprint(slot[1])
        if size > self.max_bytes:
            self._forget_part(slot)
            return
        self._drop(slot, None)  # an expired copy of the same part
        self._copies[slot] = _Copy(value, size, until)
        self._bytes += size
        while self._bytes > self.max_bytes:
            evicted = next(iter(self._copies))
            self._drop(evicted, "evictions")
            self._forget_part(evicted)
        self._sized()

    def _count(self, what: Literal["hits", "misses", "evictions", "drops"], kind: str) -> None:
        if self._metrics is not None:
            getattr(self._metrics, what).labels(kind).inc()

    def _sized(self) -> None:
        if self._metrics is not None:
            self._metrics.size.set(self._bytes)
