"""Fetch responses without the aborted transactions Kafka would not list, for ``scripts.kafka_proxy``.

A read_committed Fetch response lists, per partition, aborted transactions as (producer id, first
offset). Kafka lists those overlapping the fetched range; noida-db lists every aborted transaction
of the partition, also those whose ABORT marker lies below the fetch offset. aiokafka's fetcher
marks a listed producer id aborted at that producer's first batch at or after the first offset and
unmarks it at the producer's next ABORT marker: for a transaction that ended before the fetch, no
marker follows, and every later batch of that producer id on the partition is skipped for good:
a transactional id keeps its producer id across epochs, so all its later committed writes are.

``AbortedTransactions.drop_ended`` drops an entry whose ABORT marker (a control batch of that
producer id, control key type 0) lies at or after its first offset and below the fetch offset.
For an entry whose first offset is below the fetch offset, it fetches the partition itself from
there, read_uncommitted with max_wait 0 on a connection of its own (never the client's: that
one's responses must stay in order), and looks for the marker. noida-db ignores max_bytes, so that
fetch brings the rest of the log, but only once per aborted transaction: where each marker lies,
and up to where none was, is remembered (a fact of an append-only log; the harness never deletes
and recreates a topic under the same name). Responses with no such entry, or no records, cost a
pass over their partitions and nothing else. Entries of a partition without records, and entries
that begin past the fetched records, stay as noida-db has them: aiokafka skips nothing for them.
"""

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Any

from aiokafka.protocol import fetch
from aiokafka.record.memory_records import MemoryRecords

log = logging.getLogger("kafka_proxy")

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
ABORT = 0  # a control record's type, after its version: two int16 in its key
CONTROL_KEY = struct.Struct(">hh")
LOOKUP_TIMEOUT = 10.0  # seconds for one lookup fetch (max_wait 0: answered at once)
LOOKUP_MAX_BYTES = 1 << 20
MAX_REMEMBERED = 100_000  # aborted transactions; beyond, the proxy forgets and looks up again

Key = tuple[str, int, int, int]  # topic, partition, producer id, first offset


def _partition_names(cls: type[Any]) -> tuple[str, ...]:
    """The per-partition field names of a Fetch request or response class."""
    topics = cls.SCHEMA.fields[cls.SCHEMA.names.index("topics")].array_of
    return topics.fields[topics.names.index("partitions")].array_of.names


@dataclass(frozen=True)
class _Layout:
    """Where one Fetch version keeps what ``drop_ended`` reads, and how to ask a lookup in it."""

    request: type[Any]
    response: type[Any]
    offset: int  # of a request partition: its fetch offset
    aborted: int  # of a response partition: its aborted transactions (its records are last)

    @classmethod
    def of(cls, version: int) -> "_Layout | None":
        request, response = (getattr(fetch, f"Fetch{kind}_v{version}", None) for kind in ("Request", "Response"))
        if request is None or response is None or "isolation_level" not in request.SCHEMA.names:
            return None  # before v4: no transactions
        asked, answered = _partition_names(request), _partition_names(response)
        return cls(
            request,
            response,
            asked.index("fetch_offset" if "fetch_offset" in asked else "offset"),
            answered.index("aborted_transactions"),
        )

    def lookup(self, topic: str, partition: int, offset: int) -> Any:
        """A request for the partition from ``offset``, everything in it, answered at once."""
        values = {
            "replica_id": -1,
            "max_wait_time": 0,
            "min_bytes": 0,
            "max_bytes": LOOKUP_MAX_BYTES,
            "isolation_level": READ_UNCOMMITTED,
            "session_id": 0,
            "session_epoch": -1,
            "forgotten_topics_data": [],
            "rack_id": "",
            "partition": partition,
            "current_leader_epoch": -1,
            "fetch_offset": offset,
            "offset": offset,
            "log_start_offset": -1,
        }
        wanted = tuple(values[name] for name in _partition_names(self.request))
        top = {name: values[name] for name in self.request.SCHEMA.names if name != "topics"}
        return self.request(topics=[(topic, [wanted])], **top)


VERSIONS = sorted(
    int(name[len("FetchRequest_v") :])
    for name in vars(fetch)
    if name.startswith("FetchRequest_v") and name[len("FetchRequest_v") :].isdigit()
)
LAYOUTS = {version: layout for version in VERSIONS if (layout := _Layout.of(version)) is not None}


class AbortedTransactions:
    """Where the ABORT markers of the aborted transactions listed to clients lie, as far as looked up.

    ``lookups`` counts the fetches it sent to the broker for that.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.lookups = 0
        self._ended: dict[Key, int] = {}  # the ABORT marker's offset
        self._open_until: dict[Key, int] = {}  # no ABORT marker from the first offset up to here

    async def drop_ended(self, version: int, request: Any, response: Any) -> bool:
        """Drop from a decoded Fetch response (of the decoded ``request``) each aborted transaction
        that ended below its partition's fetch offset; whether any was."""
        layout = LAYOUTS.get(version)
        if layout is None or request.isolation_level != READ_COMMITTED:
            return False
        fetch_offsets: dict[tuple[str, int], int] | None = None
        changed = False
        for topic, partitions in response.topics:
            for i, answered in enumerate(partitions):
                entries = answered[layout.aborted]
                if not entries or not answered[-1]:  # no records: nothing to skip, whatever is listed
                    continue
                if fetch_offsets is None:
                    fetch_offsets = {
                        (name, asked[0]): asked[layout.offset]
                        for name, asked_partitions in request.topics
                        for asked in asked_partitions
                    }
                fetch_offset = fetch_offsets.get((topic, answered[0]))
                if fetch_offset is None or all(first >= fetch_offset for _pid, first in entries):
                    continue
                kept = await self._kept(layout, topic, answered[0], fetch_offset, entries)
                if len(kept) < len(entries):
                    partitions[i] = (*answered[: layout.aborted], kept, *answered[layout.aborted + 1 :])
                    changed = True
        return changed

    async def _kept(
        self, layout: _Layout, topic: str, partition: int, fetch_offset: int, entries: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """``entries`` without those whose ABORT marker lies below ``fetch_offset``."""
        unknown = {
            (topic, partition, pid, first)
            for pid, first in entries
            if first < fetch_offset
            and (topic, partition, pid, first) not in self._ended
            and self._open_until.get((topic, partition, pid, first), first) < fetch_offset
        }
        if unknown:
            await self._look_up(layout, topic, partition, fetch_offset, unknown)
        return [
            (pid, first)
            for pid, first in entries
            if self._ended.get((topic, partition, pid, first), fetch_offset) >= fetch_offset
        ]

    async def _look_up(self, layout: _Layout, topic: str, partition: int, fetch_offset: int, unknown: set[Key]) -> None:
        """Read the partition up to ``fetch_offset`` from where ``unknown`` could have ended, and
        remember what it finds; on failure, they stay listed (as noida-db has them)."""
        if len(self._ended) + len(self._open_until) > MAX_REMEMBERED:
            self._ended.clear()
            self._open_until.clear()
        offset = min(self._open_until.get(key, key[3]) for key in unknown)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), LOOKUP_TIMEOUT
            )
        except OSError as error:
            log.warning("cannot look up aborted transactions of %s-%d: %s", topic, partition, error)
            return
        try:
            while offset < fetch_offset and any(key not in self._ended for key in unknown):
                records = await asyncio.wait_for(
                    self._records(layout, reader, writer, topic, partition, offset), LOOKUP_TIMEOUT
                )
                reached = self._scan(records, offset, fetch_offset, unknown)
                if reached == offset:
                    break  # nothing more to read (an error, or a log shorter than the fetch offset)
                offset = reached
        except (OSError, EOFError, ValueError, struct.error) as error:
            log.warning("looking up aborted transactions of %s-%d failed: %s", topic, partition, error)
        finally:
            writer.transport.abort()
        for key in unknown:
            if key not in self._ended:
                self._open_until[key] = max(self._open_until.get(key, key[3]), offset)

    def _scan(self, records: Any, offset: int, fetch_offset: int, unknown: set[Key]) -> int:
        """Note the ABORT markers of ``unknown``'s producers in ``records`` (fetched from ``offset``)
        below ``fetch_offset``; the offset after the last batch looked at."""
        producers = {key[2] for key in unknown if key not in self._ended}
        while records.has_next():
            batch = records.next_batch()
            if batch.base_offset >= fetch_offset:
                break
            if batch.is_control_batch and batch.producer_id in producers:
                key = next(batch).key
                if key is not None and CONTROL_KEY.unpack_from(key)[1] == ABORT:
                    self._ended_at(unknown, batch.producer_id, batch.base_offset)
            offset = batch.next_offset
        return offset

    def _ended_at(self, unknown: set[Key], producer_id: int, marker: int) -> None:
        """An ABORT marker of ``producer_id`` at ``marker`` ends its transactions begun by then."""
        for key in unknown:
            if key[2] == producer_id and key[3] <= marker and key not in self._ended:
                self._ended[key] = marker
                self._open_until.pop(key, None)

    async def _records(
        self,
        layout: _Layout,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        topic: str,
        partition: int,
        offset: int,
    ) -> Any:
        """The partition's records from ``offset``, fetched on the lookup connection."""
        request = layout.lookup(topic, partition, offset)
        payload = request.build_request_header(correlation_id=self.lookups, client_id="kafka-proxy").encode()
        payload += request.encode()
        self.lookups += 1
        writer.write(len(payload).to_bytes(4, "big") + payload)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(4), "big")
        response = layout.response.decode((await reader.readexactly(size))[4:])  # after the correlation id
        if getattr(response, "error_code", 0):
            raise ValueError(f"error {response.error_code}")
        [(_topic, [answered])] = response.topics
        if answered[1]:
            raise ValueError(f"error {answered[1]}")
        return MemoryRecords(answered[-1] or b"")
