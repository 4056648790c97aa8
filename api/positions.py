"""Read your writes, by log position.

Every write lands somewhere in the log: a command at an offset of its user's ingest partition,
its effects as facts at offsets of the same-numbered memory partition. The owner marks, in each
memory partition, how far it has applied that ingest partition (``OwnerProgress``); the
projection writer says, on the progress topic, how far ClickHouse holds each partition it reads
and which owner mark it has passed. So, in any API process:

- a read of user U is answered once ClickHouse holds every command of U's ingest partition that
  was in the log when the request arrived (``settled``) — then anything any client wrote before
  the read is in its answer, and "not found" or an empty list is only ever said after that;
- a write that promises to return once readable waits until ClickHouse holds it: its command's
  ingest offset (``until_applied``), or, for work the owner does in the user's turn (an edit, an
  extraction), the memory offset of the fact that ends it (``until_projected``).

The log end at arrival comes from the broker (one request, shared by the reads that arrive while
no such request is under way: ``LogEnds``), the positions from the progress topic, read from
its beginning by every API process. The same records name the users each memory batch wrote,
which drops their copies in the process's read cache (``api.read_cache``) before the positions
move.
"""

import asyncio
import json
import logging
import time
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from api.envelope import ApiError
from api.read_cache import ReadCache

log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner gives ``key`` (Java's murmur2, as every Kafka client does)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def behind(errmsg: str) -> ApiError:
    return ApiError(504, errmsg)


class LogEnds:
    """A topic's partitions' last stable offsets, asked of the broker in rounds: a caller waits for
    the first round that starts after it asked, so the answer covers every write acknowledged before."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        # Its own connections: a consumer that fetches holds its connection with a waiting fetch.
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed")
        self._next: asyncio.Future[dict[int, int]] | None = None
        self._round: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        if self._round is not None:
            self._round.cancel()
        await self._consumer.stop()

    async def ends(self) -> dict[int, int]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._round is None or self._round.done():
                self._round = asyncio.create_task(self._rounds(), name="log-ends")
        return await asyncio.shield(self._next)

    async def _rounds(self) -> None:
        while self._next is not None:
            answer, self._next = self._next, None  # callers from now on wait for the next round
            try:
                ends = await self._consumer.end_offsets(self._tps)
                answer.set_result({tp.partition: offset for tp, offset in ends.items()})
            except Exception as exc:  # noqa: BLE001 - every waiter of the round hears it
                answer.set_exception(exc)
                answer.exception()


class Positions:
    """How far ClickHouse holds each partition the projection writer reads, and the ingest position
    each memory partition's owner mark says (from the progress topic)."""

    def __init__(self, bootstrap: str, progress_topic: str, memory_topic: str, cache: ReadCache) -> None:
        self._topic, self._memory_topic, self._cache = progress_topic, memory_topic, cache
        self._next: dict[int, int] = {}  # progress partition → the offset its next record should have
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._written: dict[tuple[str, int], int] = defaultdict(int)  # (topic, partition) → next offset not written
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in sorted(self._consumer.partitions_for_topic(self._topic) or ())]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(), name="projection-positions")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def written(self, topic: str, partition: int) -> int:
        return self._written[(topic, partition)]

    async def until(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until ClickHouse holds ``topic``'s ``partition`` up to ``offset`` (exclusive); False on timeout."""
        key = (topic, partition)
        if self._written[key] >= offset:
            return True
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self._written[key] >= offset)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            moved = False
            for messages in batches.values():
                for message in messages:
                    if self._next.get(message.partition, message.offset) != message.offset:
                        # compacted away (or never seen): the users it named are unknown
                        self._cache.changed_all()
                    self._next[message.partition] = message.offset + 1
                    try:
                        progress = json.loads(message.value)
                        points = [((progress["topic"], progress["partition"]), progress["offset"])]
                        if "ingest_offset" in progress:
                            points.append(
                                ((progress["ingest_topic"], progress["partition"]), progress["ingest_offset"])
                            )
                    except (ValueError, KeyError, TypeError):
                        log.error("unreadable progress record at %s:%d", message.partition, message.offset)
                        self._cache.changed_all()
                        continue
                    if progress["topic"] == self._memory_topic:
                        self._drop_copies(progress)
                    for key, offset in points:
                        if offset > self._written[key]:
                            self._written[key] = offset
                            moved = True
            if moved:
                async with self._changed:
                    self._changed.notify_all()

    def _drop_copies(self, progress: dict) -> None:
        """Drop the copies of the users a memory batch wrote, before its position is believed."""
        changed = progress.get("changed")
        if isinstance(changed, list) and not progress.get("changed_all"):
            self._cache.changed(str(key) for key in changed)
        else:  # too many to name, a publish lost, or a writer that does not name them
            self._cache.changed_all()


class Consistency:
    """The waits the routes need, with the process's settings."""

    def __init__(
        self,
        ends: dict[str, LogEnds],
        positions: Positions,
        ingest_topic: str,
        memory_topic: str,
        partitions: int,
        timeout: float,
    ) -> None:
        self._ends, self._positions = ends, positions
        self._ingest, self._memory, self._partitions, self.timeout = ingest_topic, memory_topic, partitions, timeout

    def partition(self, project_id: str, user_id: str) -> int:
        return partition_of(f"{project_id}:{user_id}".encode(), self._partitions)

    async def settled(self, project_id: str, user_id: str | None = None) -> None:
        """Wait until ClickHouse holds every command that was in the log now (of the user's ingest
        partition, or of every partition when ``user_id`` is None); errno 504 when it does not in time."""
        wanted = None if user_id is None else [self.partition(project_id, user_id)]
        await self.settled_topic(self._ingest, wanted)

    async def settled_topic(self, topic: str, partitions: list[int] | None = None) -> None:
        """Wait until ClickHouse holds what ``topic`` (some of its ``partitions``) held now."""
        clock = time.monotonic()
        ends = await self._ends[topic].ends()
        for partition in partitions if partitions is not None else sorted(ends):
            left = max(0.0, self.timeout - (time.monotonic() - clock))
            if not await self._positions.until(topic, partition, ends[partition], left):
                raise behind(
                    f"the read models are behind the log ({topic} partition {partition} at "
                    f"{self._positions.written(topic, partition)} of {ends[partition]}); retry shortly"
                )

    async def until_applied(self, partition: int, offset: int, what: str) -> None:
        """Wait until ClickHouse holds the command at ``offset`` of ingest ``partition`` and what it stated at once."""
        if not await self._positions.until(self._ingest, partition, offset + 1, self.timeout):
            raise behind(
                f"{what} is in the log but not readable after {self.timeout:g}s; it will be, retry the read shortly"
            )

    async def until_projected(self, partition: int, offset: int, what: str) -> None:
        """Wait until ClickHouse holds the fact at ``offset`` of memory ``partition``."""
        if not await self._positions.until(self._memory, partition, offset + 1, self.timeout):
            raise behind(f"{what} is done but not readable after {self.timeout:g}s; it will be, retry the read shortly")

    async def until_topic(self, topic: str, partition: int, offset: int, what: str) -> None:
        if not await self._positions.until(topic, partition, offset + 1, self.timeout):
            raise behind(f"{what} is in the log but not readable after {self.timeout:g}s; retry the read shortly")
