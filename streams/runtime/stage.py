"""The owner stage of one worker process: a consumer group member over the ingest topic, one
``PartitionWorker`` per partition it is given, and a supervisor that starts each one.

    ingest ─▶ consumer (group MEMSTREAM_APP_ID, read_committed) ─▶ partition 0 ─┐
                                                                 partition 1 ─┼─▶ transactions
                                                                 …           ─┘
    jobs of every partition share MEMSTREAM_EXTRACT_CONCURRENCY slots

Partitions come and go with rebalances (``ConsumerRebalanceListener``). A revoked partition
finishes its batch in hand and stops, inside the callback, so it has committed before another
member takes it. An assigned partition is only paused in the callback: the supervisor starts it
(fence older producers of it, restore its users' memory, read its committed offset, seek,
resume) outside the rebalance, because those steps talk to the broker, and a rebalance callback
that waits on the broker can wait on the rebalance itself. A partition that fails (its
transaction could not commit) is started again the same way, from what was committed.
"""

import asyncio
import logging
import time

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from memstream.metrics import Metrics
from memstream.settings import Settings
from streams.jobs import Jobs
from streams.owner import Owner
from streams.runtime.clients import group_consumer
from streams.runtime.partition import PartitionWorker, ProjectCheck

log = logging.getLogger(__name__)

RESTART_BACKOFF = (0.2, 5.0)  # first and longest pause before a partition that did not start is tried again
START_TIMEOUT = 15.0  # seconds a partition may take to fence, restore and seek


class OwnerStage:
    def __init__(
        self, settings: Settings, owner: Owner, jobs: Jobs, project_known: ProjectCheck, metrics: Metrics | None = None
    ) -> None:
        self._settings, self._owner, self._jobs, self._project_known = settings, owner, jobs, project_known
        self.slots = asyncio.Semaphore(settings.extract_concurrency)
        self._metrics = metrics or Metrics()
        self._metrics.extraction_slots.set(settings.extract_concurrency)
        self._consumer = group_consumer(settings, settings.app_id, max_partition_fetch_bytes=2 * 1024 * 1024)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        self.partitions: dict[int, PartitionWorker] = {}
        self._assigned: set[int] = set()
        self._waiting_since: dict[int, float] = {}  # assigned partitions without a running worker, and since when
        self._changed = asyncio.Event()
        self.ready = asyncio.Event()  # set once every partition of an assignment is running
        self._fetch_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # revokes and starts change ``partitions`` one at a time
        self.stopped_with: BaseException | None = None

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()
        self._consumer.subscribe([self._settings.topic_ingest], listener=_Listener(self))
        self._fetch_task = asyncio.create_task(self._fetch(), name="owner-fetch")
        self._supervisor = asyncio.create_task(self._supervise(), name="owner-supervisor")

    async def stop(self) -> None:
        for task in (self._supervisor, self._fetch_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._supervisor, self._fetch_task) if t is not None), return_exceptions=True
        )
        async with self._lock:  # no more records come: let the jobs under way finish and commit
            await asyncio.gather(*(worker.stop(self._settings.shutdown_grace) for worker in self.partitions.values()))
            self.partitions.clear()
        await self._consumer.stop()
        await self._admin.close()

    def health(self) -> str | None:
        """Why the stage is not processing, or None when it is."""
        if self.stopped_with is not None:
            return f"the owner stage stopped: {type(self.stopped_with).__name__}: {self.stopped_with}"
        if any(task is None or task.done() for task in (self._fetch_task, self._supervisor)):
            return "the owner stage is not running"
        now = time.monotonic()
        waiting = sorted(p for p, since in self._waiting_since.items() if now - since >= self._settings.health_grace)
        if waiting:
            return f"owner partitions {waiting} cannot start (broker unavailable?)"
        return None

    def jobs_under_way(self) -> int:
        return sum(worker.jobs_under_way() for worker in self.partitions.values())

    def buffers_open(self) -> dict[int, int]:
        """Users with an open buffer window, per partition this worker runs."""
        return {partition: worker.buffers_open() for partition, worker in self.partitions.items()}

    # --- rebalances (inside aiokafka's callbacks: no waiting on the broker) ---------------------------

    def assigned(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._consumer.pause(tp)
            self._assigned.add(tp.partition)
            self._waiting_since.setdefault(tp.partition, time.monotonic())
        self._changed.set()

    async def revoked(self, tps: set[TopicPartition]) -> None:
        async with self._lock:
            for tp in tps:
                self._assigned.discard(tp.partition)
                self._waiting_since.pop(tp.partition, None)
                worker = self.partitions.pop(tp.partition, None)
                if worker is not None:
                    await worker.stop()

    # --- the supervisor --------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), delay)
            except TimeoutError:
                pass
            self._changed.clear()
            async with self._lock:
                for partition, worker in list(self.partitions.items()):
                    if worker.done:
                        log.warning(
                            "owner partition %d failed (%s); starting it again from what was committed",
                            partition,
                            worker.failure,
                        )
                        del self.partitions[partition]
                        await worker.stop()
                        self._consumer.pause(worker.tp)
                        self._waiting_since.setdefault(partition, time.monotonic())
                await asyncio.gather(*(self._start(p) for p in sorted(self._assigned - self.partitions.keys())))
                if self._assigned and self._assigned <= self.partitions.keys():
                    self.ready.set()
            delay = RESTART_BACKOFF[0] if not self._waiting_since else min(delay * 2, RESTART_BACKOFF[1])

    async def _start(self, partition: int) -> None:
        """Start a worker for ``partition``. It is registered first: from the moment it seeks and
        resumes, every record the consumer returns for the partition is the worker's (a record
        returned and dropped would move the consumer's position past it)."""
        worker = PartitionWorker(
            partition,
            self._settings,
            self._consumer,
            self._owner,
            self._jobs,
            self.slots,
            self._project_known,
            self._committed,
            self._metrics,
        )
        self.partitions[partition] = worker
        try:
            async with asyncio.timeout(START_TIMEOUT):  # with the broker away, a start would wait forever
                await worker.start()
        except Exception as exc:  # noqa: BLE001 - tried again after a pause
            log.warning("owner partition %d did not start (%s: %s); trying again", partition, type(exc).__name__, exc)
            del self.partitions[partition]
            self._consumer.pause(worker.tp)
            await worker.stop()
            return
        self._waiting_since.pop(partition, None)

    async def _committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None when it has none), asked of the coordinator
        by the admin client: the consumer's own lookup waits for rebalances to settle."""
        offsets = await self._admin.list_consumer_group_offsets(self._settings.app_id, partitions=[tp])
        offset = offsets[tp].offset if tp in offsets else -1
        return offset if offset >= 0 else None

    async def _fetch(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=1000, max_records=1000)
                for tp, records in batches.items():
                    worker = self.partitions.get(tp.partition)
                    if worker is not None and not worker.done:
                        worker.feed(records)
                    # else: the worker failed; the next one seeks back to the committed offset
                for worker in self.partitions.values():
                    if not worker.done and worker.started and not batches.get(worker.tp):
                        worker.nudge()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported by health; the process should be restarted
            self.stopped_with = exc
            log.exception("the owner's consumer stopped")


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stage: OwnerStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._stage.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._stage.assigned(assigned)
