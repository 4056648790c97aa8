"""A loopback Kafka-protocol proxy in front of the local broker (noida-db), for dev and tests.

Why it exists:

- noida-db answers a Fetch that finds no records at once, where Kafka holds it for up to the
  request's ``max_wait_time``. Every idle aiokafka consumer then fetches again thousands of times
  a second and keeps ~0.4 of a core busy. Memstream's code must not work around the stand-in's
  bugs, so the dev/test harness does: the proxy holds an empty fetch and asks the broker again
  when data may have arrived (a Produce or EndTxn response went through the proxy, on any
  connection) or when ``max_wait_time`` is up, and answers with the last response. An idle
  consumer makes ~1000/max_wait_ms fetches a second (2 at aiokafka's default), and a record
  produced through the proxy still reaches a waiting consumer within milliseconds.
- noida-db lists, in a read_committed Fetch response, every aborted transaction of the partition,
  also those whose ABORT marker lies below the fetch offset; Kafka lists only those overlapping
  the fetched range. A fetch from 10 got ``aborted_transactions [(1003, 8)]`` with that abort's
  marker at 9: aiokafka then skips every later batch of producer 1003 (a transactional id keeps its
  producer id across epochs) on that partition, for good (the broker-outage drill hung ~1 run in
  5). The proxy drops such entries, looking up once, on a short connection of its own, where
  their markers lie (``scripts.kafka_fetch_fix``).
- Fault drills need a broker outage that loses nothing: noida-db, really stopped, can lose writes
  it had acknowledged (another bug of the stand-in). ``cut()`` (SIGUSR1 when run as a process)
  closes every connection and refuses new ones (accepts and closes them) until ``restore()``
  (SIGUSR2): clients see a crashed broker while the broker process keeps its data.

What it rewrites: the broker and coordinator addresses in Metadata and FindCoordinator responses
become the proxy's own, so clients never connect past it, and a Fetch response's aborted
transactions that ended before the fetch offset go. Every other byte passes unchanged.

Requests of one client connection are handled one after another, in order, as a Kafka broker
does ("a single in-flight request per connection"), so, as on Kafka, a request a client sends
behind a held fetch on the same connection waits for it: aiokafka sends ListOffsets and Metadata
on its fetch connection, and ``end_offsets()`` on a consumer with an idle partition takes up to
its fetch_max_wait_ms. Each client connection has its own connection to the broker. Only
non-flexible request bodies are read (Produce's acks; Fetch's max_wait_time, isolation level and
offsets): all aiokafka 0.14 sends. Versions the proxy cannot decode pass through unchanged, with a warning when that means an
address is not rewritten. One broker behind one proxy: every advertised broker becomes the
proxy's address. A Produce with acks=0 gets no response, so it wakes no held fetch.

``python -m scripts.kafka_proxy --host 127.0.0.1 --listen-port 9092 --upstream-port 19092``;
``scripts.broker.LocalBroker`` runs it as a child process in front of noida-db.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import struct
from dataclasses import dataclass, field
from types import ModuleType
from typing import IO, Any

from aiokafka.protocol import coordination, fetch, metadata

from scripts.kafka_fetch_fix import AbortedTransactions

log = logging.getLogger("kafka_proxy")

PRODUCE, FETCH, METADATA, FIND_COORDINATOR, END_TXN = 0, 1, 3, 10, 26
SIZE = struct.Struct(">i")  # every request and response frame starts with its size
HEADER = struct.Struct(">hhih")  # api_key, api_version, correlation_id, client_id's length (-1: null)
INT16 = struct.Struct(">h")


def _by_version(module: ModuleType, prefix: str) -> dict[int, type[Any]]:
    """aiokafka's ``<prefix>_vN`` classes of ``module``, by N."""
    return {
        cls.API_VERSION: cls
        for name, cls in vars(module).items()
        if name.startswith(prefix + "_v") and name[len(prefix) + 2 :].isdigit()
    }


FETCH_REQUESTS = _by_version(fetch, "FetchRequest")
FETCH_RESPONSES = _by_version(fetch, "FetchResponse")
FETCH_VERSIONS = FETCH_REQUESTS.keys() & FETCH_RESPONSES.keys()  # v0-v11, none flexible
ADVERTISING = {
    METADATA: _by_version(metadata, "MetadataResponse"),
    FIND_COORDINATOR: _by_version(coordination, "FindCoordinatorResponse"),
}
API_NAMES = {
    PRODUCE: "Produce",
    FETCH: "Fetch",
    METADATA: "Metadata",
    FIND_COORDINATOR: "FindCoordinator",
    END_TXN: "EndTxn",
}


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's payload; None at a clean end of stream (between frames)."""
    try:
        head = await reader.readexactly(SIZE.size)
    except asyncio.IncompleteReadError as eof:
        if eof.partial:
            raise
        return None
    return await reader.readexactly(SIZE.unpack(head)[0])


def _write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    writer.write(SIZE.pack(len(payload)) + payload)


def _acks(payload: bytes, body: int, version: int) -> int:
    """A Produce request's ``acks``: its first field, after the transactional id from v3 (a
    non-flexible string: aiokafka sends up to v8, flexible versions start at v9)."""
    if version >= 3:
        (length,) = INT16.unpack_from(payload, body)
        body += INT16.size + max(length, 0)
    return INT16.unpack_from(payload, body)[0]


def _nothing_fetched(decoded: Any) -> bool:
    """Whether a decoded Fetch response carries no records in any partition and no error."""
    if getattr(decoded, "error_code", 0):  # top-level from v7
        return False
    # every version's partition: (partition, error_code, …, records)
    return all(p[1] == 0 and not p[-1] for _topic, partitions in decoded.topics for p in partitions)


@dataclass
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, payload: bytes) -> None:
        _write_frame(self.writer, payload)
        await self.writer.drain()

    async def ask(self, payload: bytes) -> bytes:
        """Send a request and read its response (the broker answers a connection's requests in order)."""
        await self.send(payload)
        response = await _read_frame(self.reader)
        if response is None:
            raise ConnectionResetError("the broker closed the connection")
        return response


@dataclass(eq=False)
class _Link:
    """One client connection, the task serving it and its connection to the broker."""

    task: asyncio.Task[None]
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = field(default=None)

    def close(self) -> None:
        """Drop both connections at once and stop the task (from outside it)."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        self.task.cancel()


class KafkaProxy:
    """The proxy, in the running event loop: ``await start()``, ``cut()``/``restore()``, ``await close()``.

    ``port`` is where it listens (``listen_port`` 0 picks a free one); ``upstream_fetches`` counts
    the fetches it has sent to the broker, re-fetches included (not ``aborted.lookups``).
    """

    def __init__(self, host: str, listen_port: int, upstream_port: int, upstream_host: str | None = None) -> None:
        self.host, self.port = host, listen_port
        self.upstream_host, self.upstream_port = upstream_host or host, upstream_port
        self.upstream_fetches = 0
        self.aborted = AbortedTransactions(self.upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._down = False
        self._data_may_arrive = asyncio.Event()  # set, then replaced, at every wake-up
        self._seen: set[tuple[int, int]] = set()  # (api_key, version) of requests, logged once
        self._warned: set[tuple[int, int]] = set()  # … of responses whose addresses stay unrewritten

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Close every connection, and each new one as soon as it is accepted, until ``restore()``."""
        self._down = True
        for link in list(self._links):
            link.close()

    def restore(self) -> None:
        self._down = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links]
        self.cut()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        link = _Link(task, writer)
        self._links.add(link)
        try:
            try:
                up_reader, link.upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError as error:
                log.warning("cannot reach the broker at %s:%d: %s", self.upstream_host, self.upstream_port, error)
                return
            upstream = _Upstream(up_reader, link.upstream)
            while (request := await _read_frame(reader)) is not None:
                response = await self._handle(request, upstream)
                if response is not None:
                    _write_frame(writer, response)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # either side went away: so does the other
        except asyncio.CancelledError:
            # cut() or close() ended the connection; ended, not cancelled, as Python 3.11's
            # start_server logs a handler task that ends cancelled as an error
            pass
        except Exception:  # a frame it could not make sense of: that connection ends, the proxy stays
            log.warning("closing a connection after an unexpected error", exc_info=True)
        finally:
            self._links.discard(link)
            for side in (writer, link.upstream):
                if side is not None:
                    side.close()

    async def _handle(self, request: bytes, upstream: _Upstream) -> bytes | None:
        """Forward one request; its response for the client, or None when there is none (acks=0)."""
        api_key, version, _correlation_id, client_id_length = HEADER.unpack_from(request)
        body = HEADER.size + max(client_id_length, 0)
        if (api_key, version) not in self._seen:
            self._seen.add((api_key, version))
            log.debug("first %s v%d", API_NAMES.get(api_key, f"api {api_key}"), version)
        if api_key == PRODUCE and _acks(request, body, version) == 0:
            await upstream.send(request)
            return None
        if api_key == FETCH and version in FETCH_VERSIONS:
            return await self._fetch(request, body, version, upstream)
        response = await upstream.ask(request)
        if api_key in (PRODUCE, END_TXN):
            self._wake()
        elif api_key in ADVERTISING:
            response = self._advertise_self(api_key, version, response)
        return response

    async def _fetch(self, request: bytes, body: int, version: int, upstream: _Upstream) -> bytes:
        """Ask until the broker has records (or an error), a wake-up finds none, or max_wait_time is
        up; the last response, without the aborted transactions that ended before the fetch."""
        loop = asyncio.get_running_loop()
        asked = FETCH_REQUESTS[version].decode(request[body:])
        deadline = loop.time() + asked.max_wait_time / 1000
        while True:
            woken = self._data_may_arrive  # taken before asking, so a wake-up meanwhile is not missed
            response = await upstream.ask(request)
            self.upstream_fetches += 1
            decoded = FETCH_RESPONSES[version].decode(response[SIZE.size :])  # after the correlation id
            remaining = deadline - loop.time()
            if remaining <= 0 or not _nothing_fetched(decoded):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), remaining)
        if await self.aborted.drop_ended(version, asked, decoded):
            response = response[: SIZE.size] + decoded.encode()
        return response

    def _wake(self) -> None:
        """Data may have arrived: every held fetch asks again."""
        self._data_may_arrive.set()
        self._data_may_arrive = asyncio.Event()

    def _advertise_self(self, api_key: int, version: int, response: bytes) -> bytes:
        """The response with every broker/coordinator address replaced by the proxy's."""
        decoder = ADVERTISING[api_key].get(version)
        if decoder is None:
            if (api_key, version) not in self._warned:
                self._warned.add((api_key, version))
                log.warning(
                    "%s v%d not understood: its addresses are not rewritten and clients may "
                    "connect to the broker directly",
                    API_NAMES[api_key],
                    version,
                )
            return response
        decoded = decoder.decode(response[SIZE.size :])
        if api_key == METADATA:
            decoded.brokers = [
                (node_id, self.host, self.port, *rest) for node_id, _host, _port, *rest in decoded.brokers
            ]
        elif decoded.error_code == 0:
            decoded.host, decoded.port = self.host, self.port
        return response[: SIZE.size] + decoded.encode()


async def serve(host: str, listen_port: int, upstream_port: int, status: IO[str] | None = None) -> None:
    """Run the proxy until SIGTERM or SIGINT; SIGUSR1 cuts it, SIGUSR2 restores it. ``status``, if
    given, gets a line ``listening``, ``cut`` or ``restored`` once each has taken effect."""
    proxy = KafkaProxy(host, listen_port, upstream_port)
    stop = asyncio.Event()

    def report(line: str) -> None:
        if status is not None:
            with contextlib.suppress(OSError):  # nobody listens any more
                status.write(line + "\n")
                status.flush()

    loop = asyncio.get_running_loop()

    def cut() -> None:
        proxy.cut()
        loop.call_soon(report, "cut")  # after the sockets' closing, which the cut scheduled

    def restore() -> None:
        proxy.restore()
        report("restored")

    for sig, handler in (
        (signal.SIGTERM, stop.set),
        (signal.SIGINT, stop.set),
        (signal.SIGUSR1, cut),
        (signal.SIGUSR2, restore),
    ):
        loop.add_signal_handler(sig, handler)
    await proxy.start()
    report("listening")
    try:
        await stop.wait()
    finally:
        await proxy.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.kafka_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="where both the proxy and the broker listen")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True, help="the broker's port")
    parser.add_argument("--status-fd", type=int, help="a file descriptor to report listening/cut/restored on")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG also logs each request version seen first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    status = open(args.status_fd, "w") if args.status_fd is not None else None
    try:
        asyncio.run(serve(args.host, args.listen_port, args.upstream_port, status))
    finally:
        if status is not None:
            with contextlib.suppress(OSError):
                status.close()


if __name__ == "__main__":
    main()
