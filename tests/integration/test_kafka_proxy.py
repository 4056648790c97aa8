"""The local broker's proxy (``scripts/kafka_proxy.py``) makes noida-db behave like Kafka for
fetches (an idle consumer's fetch waits, a produced record still arrives at once), keeps every
client behind it, and simulates an outage with the broker's data kept. Its own broker, on loopback."""

import asyncio
import contextlib
import itertools
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.protocol import coordination, fetch, metadata
from aiokafka.protocol.api import RequestStruct

from scripts.broker import LocalBroker, free_port
from scripts.kafka_proxy import KafkaProxy

MAX_WAIT_MS = 500  # aiokafka's default fetch_max_wait_ms, spelled out
IDLE_SECONDS = 3.0
_topics = itertools.count()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = LocalBroker(tmp_path_factory.mktemp("proxied-broker"), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def topic(proxied: LocalBroker) -> str:
    """A new one-partition topic."""
    name = f"proxy-test-{next(_topics)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=proxied.bootstrap)
    await admin.start()
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(name, 1, 1)]), 10)
    finally:
        await asyncio.wait_for(admin.close(), 10)
    return name


async def stop(*clients: Any) -> None:
    """Stop aiokafka clients, each within a deadline."""
    for client in clients:
        await asyncio.wait_for(client.stop(), 15)


@pytest.fixture
async def producer(proxied: LocalBroker) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=proxied.bootstrap, acks="all", request_timeout_ms=2000)
    await asyncio.wait_for(producer.start(), 10)
    yield producer
    await stop(producer)


class Assigned(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.event.set()


async def group_consumer(bootstrap: str, topic: str, **config: object) -> AIOKafkaConsumer:
    """A started consumer in a group of its own that has its partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=MAX_WAIT_MS,
        **config,
    )
    assigned = Assigned()
    consumer.subscribe([topic], listener=assigned)
    await asyncio.wait_for(consumer.start(), 10)
    await asyncio.wait_for(assigned.event.wait(), 15)
    return consumer


async def tail_consumer(bootstrap: str, topic: str, **config: object) -> AIOKafkaConsumer:
    """A started consumer without a group, at the end of the topic's partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=MAX_WAIT_MS, **config)
    await asyncio.wait_for(consumer.start(), 10)
    consumer.assign([TopicPartition(topic, 0)])
    await asyncio.wait_for(consumer.seek_to_end(), 10)
    return consumer


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_idle_consumers_fetch_about_twice_a_second(proxied: LocalBroker, topic: str) -> None:
    assert proxied.upstream_port is not None
    proxy = KafkaProxy("127.0.0.1", 0, proxied.upstream_port)  # one in this process, to count its fetches
    await proxy.start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    consumers = [await group_consumer(bootstrap, topic), await tail_consumer(bootstrap, topic)]
    waiting = [asyncio.create_task(c.getone()) for c in consumers]
    try:
        before = proxy.upstream_fetches
        await asyncio.sleep(IDLE_SECONDS)
        fetches = proxy.upstream_fetches - before
        assert not any(task.done() for task in waiting), "a record nobody produced"
    finally:
        for task in waiting:
            task.cancel()
        await stop(*consumers)
        await asyncio.wait_for(proxy.close(), 10)
    # each consumer: one fetch per max wait, which the proxy asks the broker twice (at once, and
    # when the wait is up); noida-db alone answers thousands a second
    expected = len(consumers) * 2 * IDLE_SECONDS * 1000 / MAX_WAIT_MS
    print(f"{len(consumers)} idle consumers: {fetches} fetches sent to the broker in {IDLE_SECONDS:g}s")
    assert fetches <= expected * 1.5 + 4, f"{fetches} fetches in {IDLE_SECONDS:g}s, about {expected:g} expected"


async def test_an_idle_consumer_costs_next_to_no_cpu(proxied: LocalBroker, topic: str) -> None:
    assert proxied.proxy_pid is not None
    processes = {"proxy": proxied.proxy_pid, "broker": int(proxied.pid_file.read_text())}
    consumer = await group_consumer(proxied.bootstrap, topic)
    waiting = asyncio.create_task(consumer.getone())
    try:
        before = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"client": time.thread_time()}
        clock = time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        elapsed = time.monotonic() - clock
        after = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"client": time.thread_time()}
    finally:
        waiting.cancel()
        await stop(consumer)
    cores = {name: (after[name] - before[name]) / elapsed for name in before}
    print("idle consumer, cores used:", {name: round(used, 3) for name, used in cores.items()})
    assert cores["proxy"] < 0.05 and cores["broker"] < 0.05, cores
    assert cores["client"] < 0.05, f"the consumer's event loop is busy: {cores}"  # ~0.85 without the proxy


async def test_a_record_reaches_a_waiting_consumer_in_milliseconds(
    proxied: LocalBroker, topic: str, producer: AIOKafkaProducer
) -> None:
    consumer = await tail_consumer(proxied.bootstrap, topic)
    latencies = []
    try:
        for n in range(20):
            waiting = asyncio.create_task(consumer.getone())
            # aiokafka fetches once the consumer asks, and the broker finds nothing: the proxy
            # holds that fetch now, for up to MAX_WAIT_MS
            await asyncio.sleep(0.05)
            sent = time.perf_counter()
            await asyncio.wait_for(producer.send_and_wait(topic, b"%d" % n), 5)
            record = await asyncio.wait_for(waiting, 5)
            latencies.append((time.perf_counter() - sent) * 1000)
            assert record.value == b"%d" % n
    finally:
        await stop(consumer)
    p50 = statistics.median(latencies)
    print(f"produce -> consume: p50 {p50:.1f} ms, max {max(latencies):.1f} ms")
    assert p50 < 20, f"p50 {p50:.1f} ms with a fetch max wait of {MAX_WAIT_MS} ms: {latencies}"


async def test_a_committed_transaction_reaches_a_read_committed_consumer_in_milliseconds(
    proxied: LocalBroker, topic: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=proxied.bootstrap, transactional_id=f"{topic}-tx")
    await asyncio.wait_for(producer.start(), 10)
    consumer = await tail_consumer(proxied.bootstrap, topic, isolation_level="read_committed")
    latencies = []
    try:
        for n in range(10):
            waiting = asyncio.create_task(consumer.getone())
            await producer.begin_transaction()
            await asyncio.wait_for(producer.send_and_wait(topic, b"%d" % n), 5)
            await asyncio.sleep(0.05)  # the consumer's fetch, held by the proxy, found nothing committed
            assert not waiting.done()
            committing = time.perf_counter()
            await asyncio.wait_for(producer.commit_transaction(), 5)
            record = await asyncio.wait_for(waiting, 5)
            latencies.append((time.perf_counter() - committing) * 1000)
            assert record.value == b"%d" % n
    finally:
        await stop(consumer, producer)
    p50 = statistics.median(latencies)
    print(f"commit -> consume: p50 {p50:.1f} ms, max {max(latencies):.1f} ms")
    assert p50 < 20, f"p50 {p50:.1f} ms with a fetch max wait of {MAX_WAIT_MS} ms: {latencies}"


async def test_clients_reach_the_broker_only_through_the_proxy(proxied: LocalBroker, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=proxied.bootstrap)
    await admin.start()
    try:
        cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
    finally:
        await asyncio.wait_for(admin.close(), 10)
    assert {(b["host"], b["port"]) for b in cluster["brokers"]} == {(proxied.host, proxied.port)}

    # The consumer fetches through the broker address Metadata gave it, and commits through the
    # coordinator FindCoordinator gave it: both must be the proxy, so while it is down the
    # consumer gets nothing and commits nothing, whatever reaches the broker some other way.
    consumer = await group_consumer(proxied.bootstrap, topic)
    direct = AIOKafkaProducer(bootstrap_servers=f"{proxied.host}:{proxied.upstream_port}", acks="all")
    await asyncio.wait_for(direct.start(), 10)
    try:
        await asyncio.to_thread(proxied.take_down)
        try:
            await asyncio.wait_for(direct.send_and_wait(topic, b"past the proxy"), 5)
            with pytest.raises((TimeoutError, KafkaError)):
                await asyncio.wait_for(consumer.getone(), 2)
            with pytest.raises((TimeoutError, KafkaError)):
                await asyncio.wait_for(consumer.commit({TopicPartition(topic, 0): 0}), 2)
        finally:
            await asyncio.to_thread(proxied.bring_back)
        record = await asyncio.wait_for(consumer.getone(), 20)
        assert record.value == b"past the proxy"
        # and the group's coordinator is found again (stopping a consumer that has not found it
        # yet would retry its last commit forever: aiokafka 0.14 stops looking when closing)
        await asyncio.wait_for(consumer.commit({TopicPartition(topic, 0): record.offset + 1}), 20)
    finally:
        await stop(direct, consumer)


async def ask(host: str, port: int, request: RequestStruct) -> Any:
    """One request over a connection of its own, in Kafka's framing; the decoded response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = request.build_request_header(correlation_id=7, client_id="test").encode() + request.encode()
        writer.write(len(payload).to_bytes(4, "big") + payload)
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 5), "big")
        response = await asyncio.wait_for(reader.readexactly(size), 5)
    finally:
        writer.close()
    assert int.from_bytes(response[:4], "big") == 7
    return request.RESPONSE_TYPE.decode(response[4:])


# aiokafka 0.14 asks noida-db for Metadata v5 and FindCoordinator v1; the older ones are rewritten too
@pytest.mark.parametrize(
    "request_struct",
    [
        *(getattr(metadata, f"MetadataRequest_v{v}") for v in range(6)),
        coordination.FindCoordinatorRequest_v0,
        coordination.FindCoordinatorRequest_v1,
    ],
    ids=lambda cls: cls.__name__,
)
async def test_metadata_and_coordinator_answers_name_the_proxy(proxied: LocalBroker, request_struct: type) -> None:
    # (aiokafka connects to a coordinator by its node id, so only other clients would follow an
    # unrewritten FindCoordinator address: asked here directly)
    if request_struct.API_KEY == metadata.MetadataRequest.API_KEY:
        request = metadata.MetadataRequest().build(request_struct)
    else:
        request = coordination.FindCoordinatorRequest("some-group", 0).build(request_struct)
    assert proxied.upstream_port is not None
    direct = await ask(proxied.host, proxied.upstream_port, request)
    proxied_answer = await ask(proxied.host, proxied.port, request)
    if request_struct.API_KEY == metadata.MetadataRequest.API_KEY:
        assert {(b[1], b[2]) for b in direct.brokers} == {(proxied.host, proxied.upstream_port)}
        assert {(b[1], b[2]) for b in proxied_answer.brokers} == {(proxied.host, proxied.port)}
    else:
        assert (direct.error_code, direct.host, direct.port) == (0, proxied.host, proxied.upstream_port)
        assert (proxied_answer.error_code, proxied_answer.host, proxied_answer.port) == (0, proxied.host, proxied.port)


async def test_take_down_is_an_outage_and_bring_back_ends_it(
    proxied: LocalBroker, topic: str, producer: AIOKafkaProducer
) -> None:
    await asyncio.wait_for(producer.send_and_wait(topic, b"before"), 5)
    await asyncio.to_thread(proxied.take_down)
    try:
        with pytest.raises((TimeoutError, KafkaError)):
            await asyncio.wait_for(producer.send_and_wait(topic, b"during"), 5)
        reader, writer = await asyncio.open_connection(proxied.host, proxied.port)  # accepted, then closed
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    finally:
        await asyncio.to_thread(proxied.bring_back)
    await asyncio.wait_for(producer.send_and_wait(topic, b"after"), 10)
    consumer = AIOKafkaConsumer(bootstrap_servers=proxied.bootstrap, auto_offset_reset="earliest")
    await asyncio.wait_for(consumer.start(), 10)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values = []
        while b"after" not in values:
            values.append((await asyncio.wait_for(consumer.getone(), 5)).value)
    finally:
        await stop(consumer)
    assert values[0] == b"before"  # the broker kept what it had


async def test_produce_without_acks_gets_no_response_and_is_not_waited_for(proxied: LocalBroker, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=proxied.bootstrap, acks=0)
    await asyncio.wait_for(producer.start(), 10)
    try:
        for n in range(3):  # a proxy waiting for a response to the first would hold back the others
            await asyncio.wait_for(producer.send_and_wait(topic, b"%d" % n), 5)
        await asyncio.wait_for(producer.flush(), 5)
    finally:
        await stop(producer)
    consumer = AIOKafkaConsumer(bootstrap_servers=proxied.bootstrap, auto_offset_reset="earliest")
    await asyncio.wait_for(consumer.start(), 10)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values = [(await asyncio.wait_for(consumer.getone(), 5)).value for _ in range(3)]
    finally:
        await stop(consumer)
    assert values == [b"0", b"1", b"2"]


async def read_to_end(consumer: AIOKafkaConsumer, tp: TopicPartition, deadline: float) -> list[bytes]:
    """Values the consumer gets until its position is the partition's end (its LSO, read_committed)."""
    end = (await asyncio.wait_for(consumer.end_offsets([tp]), 10))[tp]
    values = []
    while (position := await consumer.position(tp)) < end:
        left = deadline - time.monotonic()
        assert left > 0, f"at {position} of {end} after {values}"
        batches = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=200), left)
        values += [record.value for record in batches.get(tp, [])]
    return values


async def aborted_transactions(port: int, topic: str, offset: int) -> list[tuple[int, int]]:
    """What a read_committed Fetch v11 (aiokafka's) of the partition from ``offset`` lists as aborted."""
    request = fetch.FetchRequest_v11(-1, 0, 0, 1 << 20, 1, 0, -1, [(topic, [(0, -1, offset, -1, 1 << 20)])], [], "")
    response = await ask("127.0.0.1", port, request)
    [(_topic, [partition])] = response.topics
    return [tuple(entry) for entry in partition[5]]


async def test_a_consumer_past_an_aborted_transaction_gets_the_producers_later_commits(
    proxied: LocalBroker, topic: str
) -> None:
    # noida-db lists aborted transactions that ended before the fetch offset; aiokafka then skips
    # every later batch of that producer id (kept across epochs by a transactional id), for good
    assert proxied.upstream_port is not None
    proxy = KafkaProxy("127.0.0.1", 0, proxied.upstream_port)  # one in this process, to count its lookups
    await proxy.start()
    bootstrap, tp = f"127.0.0.1:{proxy.port}", TopicPartition(topic, 0)
    first = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    second = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    consumer, fresh = (
        AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=MAX_WAIT_MS,
        )
        for _ in range(2)
    )
    clients: list[Any] = []
    try:
        await asyncio.wait_for(first.start(), 10)
        await first.begin_transaction()
        await asyncio.wait_for(first.send_and_wait(topic, b"r0"), 5)  # offset 0, its COMMIT at 1
        await asyncio.wait_for(first.commit_transaction(), 5)
        await first.begin_transaction()
        await asyncio.wait_for(first.send_and_wait(topic, b"r1"), 5)  # offset 2, never committed
        # the same transactional id again: its init aborts r1's transaction (an ABORT marker at 3)
        await asyncio.wait_for(second.start(), 10)
        clients.append(second)
        with contextlib.suppress(Exception):  # fenced
            await asyncio.wait_for(first.stop(), 5)

        await asyncio.wait_for(consumer.start(), 10)
        clients.append(consumer)
        consumer.assign([tp])
        assert await read_to_end(consumer, tp, time.monotonic() + 10) == [b"r0"]
        assert await consumer.position(tp) == 4  # its next fetch starts past the ABORT marker
        waiting = asyncio.create_task(consumer.getone())
        await second.begin_transaction()
        await asyncio.wait_for(second.send_and_wait(topic, b"r2"), 5)  # same producer id, next epoch
        await asyncio.wait_for(second.commit_transaction(), 5)
        done, _ = await asyncio.wait({waiting}, timeout=10)
        if not done:
            waiting.cancel()
        assert done, "r2, committed, never reached the consumer that had read past r1's abort"
        assert waiting.result().value == b"r2"

        # as on Kafka: a fetch from past the ABORT marker lists no aborted transaction, one from
        # below it or at it lists r1's
        assert await aborted_transactions(proxy.port, topic, 4) == []
        [(pid, first_offset)] = await aborted_transactions(proxy.port, topic, 3)
        assert first_offset == 2
        assert await aborted_transactions(proxy.port, topic, 0) == [(pid, 2)]
        assert await aborted_transactions(proxied.upstream_port, topic, 4) == [(pid, 2)], "noida-db fixed?"

        await asyncio.wait_for(fresh.start(), 10)
        clients.append(fresh)
        fresh.assign([tp])
        assert await read_to_end(fresh, tp, time.monotonic() + 10) == [b"r0", b"r2"]
        assert proxy.aborted.lookups == 1, "where r1's transaction ended is looked up once"
    finally:
        with contextlib.suppress(Exception):  # fenced; stopped already unless the test failed early
            await asyncio.wait_for(first.stop(), 5)
        await stop(*clients)
        await asyncio.wait_for(proxy.close(), 10)
