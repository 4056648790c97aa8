"""One ingest partition under the owner: its users' memory, its transactional producer, its loop.

    ingest records ─┐
    job answers ────┼─▶ one at a time, in arrival order ─▶ Owner step ─▶ batch ─▶ transaction
    idle ticks ─────┘

The one delivery rule: a batch's facts, dead letters, state records and the ingest position
after its last record are written in one Kafka transaction (``send_offsets_to_transaction``), so
they become visible together (to ``read_committed`` readers) or not at all. Records are handled
quickly and in order; slow work (LLM, embeddings) runs as jobs outside any transaction, and its
answer comes back as an item of this loop, whose outcome is committed in a later batch. A job
under way is part of the user's committed memory (its queue's head is ``running``), so after a
crash the job is simply started again.

Any failure to commit (broker away, producer fenced by a newer owner of the partition) throws
the partition's memory away: the supervisor (``streams.runtime.stage``) starts it again from what
was committed — the state topic and the committed offset — and that redelivery changes nothing.
The transactional id is fixed per partition, so starting a producer with it fences any older
one (a zombie after a rebalance) and aborts its open transaction.
"""

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from memstream.metrics import Metrics
from memstream.settings import Settings
from streams.jobs import EmbedEdit, ExtractFlush, Job, JobResult, Jobs
from streams.memory_state import changes, restore
from streams.owner import Owner, Parked, Step, UserMemory
from streams.records import COMMANDS, BufferFlushed, OwnerProgress, TaskFinished, Undecodable, encode, user_key
from streams.runtime.clients import stop_within

log = logging.getLogger(__name__)

MAX_BATCH = 500  # items handled before a commit
PAUSE_AT, RESUME_AT = 2000, 500  # queued records at which fetching this partition pauses / resumes
PRODUCER_CLOSE = 5.0  # seconds a stopping partition's producer gets; its successor fences it anyway


@dataclass
class Batch:
    """What the items handled since the last commit wrote."""

    records: list["Output"] = field(default_factory=list)
    state: dict[str, bytes | None] = field(default_factory=dict)
    offset: int | None = None  # the ingest position after the last record handled
    tasks_finished: Counter[str] = field(default_factory=Counter)  # task ids ended, by status (for metrics)

    def __bool__(self) -> bool:
        return bool(self.records or self.state or self.offset is not None)


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None  # None: the key's partition


@dataclass(frozen=True)
class JobAnswer:
    user: str
    generation: int
    result: JobResult


@dataclass(frozen=True)
class Tick:
    at: float


@dataclass(frozen=True)
class Advance:
    """Commit the consumer's position if it moved."""


Item: TypeAlias = ConsumerRecord | JobAnswer | Tick | Advance
ProjectCheck = Callable[[str], Awaitable[bool]]
CommittedOffset = Callable[[TopicPartition], Awaitable[int | None]]


class PartitionWorker:
    def __init__(
        self,
        partition: int,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        owner: Owner,
        jobs: Jobs,
        slots: asyncio.Semaphore,
        project_known: ProjectCheck,
        committed: CommittedOffset,
        metrics: Metrics,
    ) -> None:
        self.partition = partition
        self._settings, self._consumer, self._owner, self._jobs = settings, consumer, owner, jobs
        self._slots = slots  # shared by every partition: the worker's cap on jobs at once
        self._project_known = project_known
        self._committed = committed
        self._metrics = metrics
        self.tp = TopicPartition(settings.topic_ingest, partition)
        self._producer: AIOKafkaProducer | None = None
        self._users: dict[str, UserMemory] = {}
        self._windows: set[str] = set()  # users with an open window (the idle timer looks at these)
        self._items: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._next_offset = 0
        self._jobs_running: dict[str, asyncio.Task[None]] = {}
        self._generation = 0  # bumped when the memory is thrown away: older job answers are void
        self._loop: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._paused = False
        self._closing_at: float | None = None  # set by ``stop``: finish by then
        self.failure: BaseException | None = None  # why the loop stopped, for the supervisor
        self.committed_at = time.monotonic()
        self.committed_offset = 0  # the ingest position last committed

    # --- life ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Fence older producers of this partition, restore its memory, seek to its position."""
        settings = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            transactional_id=f"{settings.app_id}.owner.{self.partition}",
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            request_timeout_ms=int(settings.produce_timeout * 1000),
            max_request_size=self._owner.limits.record_bytes + 65_536,
        )
        await self._producer.start()
        self._users = restore(await read_partition(settings, settings.topic_state, self.partition))
        self._windows = {key for key, memory in self._users.items() if memory.window is not None}
        committed = await self._committed(self.tp)  # read after the fence: nothing older can commit now
        self._next_offset = self.committed_offset = committed or 0
        if committed is None:
            await self._consumer.seek_to_beginning(self.tp)
        else:
            self._consumer.seek(self.tp, committed)
        self._consumer.resume(self.tp)
        for memory in self._users.values():
            if memory.queue and memory.running:
                self._launch(memory, _job_of(memory))
        self._loop = asyncio.create_task(self._run(), name=f"owner-{self.partition}")
        self._ticker = asyncio.create_task(self._tick(), name=f"owner-ticks-{self.partition}")
        log.info(
            "owner partition %d: %d users restored, resuming at offset %d",
            self.partition,
            len(self._users),
            self._next_offset,
        )

    async def stop(self, grace: float = 0.0) -> None:
        """Handle what was fed, let jobs under way finish for up to ``grace`` seconds (their
        answers are committed), commit, and stop. Jobs still running then are dropped: their users'
        memory says they run, so the next owner of the partition starts them again."""
        self._closing_at = time.monotonic() + grace
        self._wake.set()
        if self._loop is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop), grace + 30.0)
            except TimeoutError:
                log.warning("owner partition %d: its last commit did not finish; stopping anyway", self.partition)
        for task in (self._ticker, self._loop):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._ticker, self._loop) if t is not None), return_exceptions=True)
        await self._drop_jobs()
        if self._producer is not None:
            await stop_within(self._producer, PRODUCER_CLOSE, f"owner partition {self.partition}'s producer")
            self._producer = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    @property
    def done(self) -> bool:
        """The loop ended by itself: a failure the supervisor must handle."""
        return self._closing_at is None and self._loop is not None and self._loop.done()

    # --- input -----------------------------------------------------------------------------------

    def feed(self, records: list[ConsumerRecord]) -> None:
        self._items.extend(records)
        if len(self._items) >= PAUSE_AT and not self._paused:
            self._consumer.pause(self.tp)
            self._paused = True
        self._wake.set()

    def _put(self, item: Item) -> None:
        self._items.append(item)
        self._wake.set()

    async def _tick(self) -> None:
        interval = self._settings.buffer_flush_interval
        every = max(0.1, min(interval / 4, 30.0))
        while True:
            await asyncio.sleep(every)
            if self._windows:
                self._put(Tick(time.time()))

    # --- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self._items:
                    if self._closing_at is not None and (
                        not self._jobs_running or time.monotonic() >= self._closing_at
                    ):
                        return
                    timeout = None if self._closing_at is None else max(0.0, self._closing_at - time.monotonic())
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        continue
                    self._wake.clear()
                while self._items:
                    batch = Batch()
                    for _ in range(MAX_BATCH):
                        if not self._items:
                            break
                        await self._handle(self._items.popleft(), batch)
                    if self._paused and len(self._items) <= RESUME_AT:
                        self._consumer.resume(self.tp)
                        self._paused = False
                    if batch:
                        async with asyncio.timeout(self._settings.produce_timeout * 3):  # a broker gone mid-commit
                            await self._commit(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, which restarts the partition
            self.failure = exc
            log.error("owner partition %d stopped: %s: %s", self.partition, type(exc).__name__, exc)

    async def _handle(self, item: Item, batch: Batch) -> None:
        now = datetime.now(UTC)
        if isinstance(item, JobAnswer):
            memory = self._users.get(item.user)
            if memory is None or item.generation != self._generation:
                return
            self._jobs_running.pop(item.user, None)
            self._apply(self._owner.on_job_done(memory, item.result, now), memory, batch, None)
        elif isinstance(item, Advance):
            return  # the batch's commit takes the position
        elif isinstance(item, Tick):
            for key in list(self._windows):
                memory = self._users[key]
                step = self._owner.on_idle(memory, now, self._settings.buffer_flush_interval)
                if step.memory is not memory:
                    self._apply(step, memory, batch, None)
        else:
            if item.offset < self._next_offset:
                return  # fetched again after a seek: handled already
            self._next_offset = batch.offset = item.offset + 1
            await self._command(item, batch, now)

    async def _command(self, message: ConsumerRecord, batch: Batch, now: datetime) -> None:
        source = f"{message.topic}:{message.partition}:{message.offset}"
        try:
            command = COMMANDS.decode(message.value)
        except Undecodable as exc:
            log.warning("dead letter %s: %s", source, exc)
            batch.records.append(self._dead_letter(message.key or b"", message.value or b"", str(exc), source))
            return
        key = user_key(command.project_id, command.user_id).decode()
        memory = self._users.get(key) or UserMemory(command.project_id, command.user_id)
        if message.key != command.key:
            # Another key may land in another partition, where this user's memory is not: refused,
            # so that a user's records are only ever applied in order, in one place.
            reason = f"its key {message.key!r} is not its user's {command.key!r} (project_id:user_id)"
            step = self._owner.refuse(memory, command, reason, now)
        elif not await self._project_known(command.project_id):
            step = self._owner.refuse(memory, command, f"project {command.project_id!r} does not exist", now)
        else:
            try:
                step = self._owner.on_command(memory, command, now)
            except Exception as exc:  # noqa: BLE001 - one record the owner cannot handle must not stop the partition
                log.exception("owner cannot handle %s", source)
                step = self._owner.refuse(memory, command, f"cannot be processed: {type(exc).__name__}: {exc}", now)
        if not self._apply(step, memory, batch, source):
            self._apply(
                self._owner.refuse(memory, command, "it would write a record over the size limit", now),
                memory,
                batch,
                source,
            )

    def _apply(self, step: Step, before: UserMemory, batch: Batch, source: str | None) -> bool:
        """Take ``step`` into the batch; False (and nothing taken) when a record it writes is too large."""
        limit = self._owner.limits.record_bytes
        memory = step.memory
        # A user's facts go to the memory partition of the ingest partition their commands came in
        # (the same one for a key-partitioned producer): behind this partition's progress markers.
        facts = [
            Output(self._settings.topic_memory, fact.key, encode(fact), partition=self.partition) for fact in step.facts
        ]
        parked = [self._parked(p, source) for p in step.parked]
        state = changes(before, memory)
        if any(len(out.value) > limit for out in facts + parked) or any(
            value is not None and len(value) > limit for value in state.values()
        ):
            log.error(
                "owner partition %d: a step for user %s would write a record over %d bytes",
                self.partition,
                memory.key,
                limit,
            )
            return False
        batch.records.extend(facts + parked)
        for fact in step.facts:
            if isinstance(fact, TaskFinished):
                batch.tasks_finished[fact.status] += len(fact.task_ids)
        batch.state.update(state)
        self._users[memory.key] = memory
        if memory.window is None:
            self._windows.discard(memory.key)
        else:
            self._windows.add(memory.key)
        if step.void_job:
            task = self._jobs_running.pop(memory.key, None)
            if task is not None:
                task.cancel()
        if step.start is not None:
            self._launch(memory, step.start)
        return True

    def _parked(self, parked: Parked, source: str | None) -> Output:
        return self._dead_letter(parked.record.key, encode(parked.record), parked.reason, source or "owner")

    def _dead_letter(self, key: bytes, value: bytes, reason: str, source: str) -> Output:
        return Output(
            self._settings.topic_dead_letter, key, value, [("error", reason.encode()), ("source", source.encode())]
        )

    async def _commit(self, batch: Batch) -> None:
        producer = self._producer
        assert producer is not None
        settings = self._settings
        offset = batch.offset
        if not self._items:  # every record returned so far is handled: the position passes markers too
            offset = max(offset or 0, await self._consumer.position(self.tp))
        advanced = offset is not None and offset > self.committed_offset
        if not (batch.records or batch.state or advanced):
            return
        await producer.begin_transaction()
        sent = [
            await producer.send(out.topic, out.value, key=out.key, headers=out.headers, partition=out.partition)
            for out in batch.records
        ]
        sent += [
            await producer.send(settings.topic_state, value, key=key.encode(), partition=self.partition)
            for key, value in batch.state.items()
        ]
        if advanced:
            assert offset is not None
            progress = OwnerProgress(ingest_offset=offset)
            sent.append(
                await producer.send(settings.topic_memory, encode(progress), key=progress.key, partition=self.partition)
            )
            await producer.send_offsets_to_transaction({self.tp: offset}, settings.app_id)
        await producer.commit_transaction()  # raises if a send failed; the open transaction is then
        # aborted by the next producer of this partition (``start``), which the supervisor makes
        await asyncio.gather(*sent)
        for status, tasks in batch.tasks_finished.items():
            self._metrics.finished(status, tasks)
        if advanced:
            self.committed_offset = offset  # type: ignore[assignment]
        self.committed_at = time.monotonic()

    def nudge(self) -> None:
        """The consumer may have moved past transaction markers with no record to hand over: let the
        loop commit that position (and mark it), so readers waiting for it are not kept waiting."""
        if not self._items:
            self._put(Advance())

    # --- jobs ------------------------------------------------------------------------------------------

    def _launch(self, memory: UserMemory, job: Job) -> None:
        user, generation = memory.key, self._generation

        async def run() -> None:
            async with self._slots:
                with self._metrics.extraction_slot():
                    result = await self._jobs.run(job)
            self._put(JobAnswer(user, generation, result))

        old = self._jobs_running.pop(user, None)
        if old is not None:
            old.cancel()
        self._jobs_running[user] = asyncio.create_task(run(), name=f"job-{user}")

    async def _drop_jobs(self) -> None:
        self._generation += 1
        tasks = list(self._jobs_running.values())
        self._jobs_running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def jobs_under_way(self) -> int:
        return len(self._jobs_running)

    def buffers_open(self) -> int:
        return len(self._windows)


def _job_of(memory: UserMemory) -> Job:
    """The job of a restored memory's running head."""
    head = memory.queue[0]
    return ExtractFlush(head, memory.slots) if isinstance(head, BufferFlushed) else EmbedEdit(head)  # type: ignore[arg-type]


async def read_partition(settings: Settings, topic: str, partition: int) -> dict[str, bytes]:
    """The live value of every key of ``topic``'s ``partition`` (committed records, tombstones applied)."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await reader.start()
    try:
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        values: dict[str, bytes] = {}
        while await reader.position(tp) < end:
            for message in (await reader.getmany(tp, timeout_ms=1000)).get(tp, []):
                key = (message.key or b"").decode()
                if message.value is None:
                    values.pop(key, None)
                else:
                    values[key] = message.value
        return values
    finally:
        await reader.stop()
