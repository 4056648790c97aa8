"""The project directory: every project's token hash and config, read whole from the projects topic.

Configs are project-wide while the extract agent's partitions are per user, so each process
reads every partition of ``memstream.projects`` from the beginning, without a consumer group,
and keeps the latest config per project in memory (what a Faust GlobalTable would do, without
its changelog). ``catch_up`` waits until everything the broker had when it was called has been
read: the extract agent calls it before a flush, so a config acknowledged before the flush was
requested is always the one used; the API calls it when a project token is not known yet.
"""

import asyncio
import hmac
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.project_config import DEFAULT, ConfigError, ProjectConfig, parse
from streams.records import PROJECT_RECORDS, ProjectConfigSet, ProjectCreated, Undecodable

log = logging.getLogger(__name__)


class ProjectDirectory:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        # Asks for the end offsets on connections of its own: the reader's connection is usually held
        # by a fetch waiting for records (as a broker holds an empty fetch), and a broker answers one
        # request per connection at a time.
        self._ends = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, isolation_level="read_committed"
        )
        self._configs: dict[str, ProjectConfig] = {}
        self._token_hashes: dict[str, str] = {}
        self._partitions: list[TopicPartition] = []
        self._read: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._ends.start()
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        self._partitions = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._run(), name="project-directory")
        await self.catch_up()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
        await self._ends.stop()

    def config(self, project_id: str) -> ProjectConfig:
        return self._configs.get(project_id, DEFAULT)

    def exists(self, project_id: str) -> bool:
        return project_id in self._token_hashes

    def token_matches(self, project_id: str, token_hash: str) -> bool:
        known = self._token_hashes.get(project_id)
        return known is not None and hmac.compare_digest(known, token_hash)

    async def catch_up(self, timeout: float = 10.0) -> None:
        """Wait until every record the broker holds now has been read (bounded by ``timeout``)."""

        async def read_all() -> None:
            ends = await self._ends.end_offsets(self._partitions)
            async with self._progress:
                await self._progress.wait_for(lambda: all(self._read.get(tp, 0) >= end for tp, end in ends.items()))

        try:
            await asyncio.wait_for(read_all(), timeout)
        except TimeoutError:
            log.warning("project directory still behind the broker after %.0fs; using the configs read so far", timeout)

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    self._apply(message.value)
            for tp in self._partitions:  # past transaction markers too, unlike the last record's offset
                self._read[tp] = await self._consumer.position(tp)
            async with self._progress:
                self._progress.notify_all()

    def _apply(self, raw: bytes) -> None:
        try:
            record = PROJECT_RECORDS.decode(raw)
        except Undecodable as exc:
            log.error("undecodable record on %s: %s", self._topic, exc)
            return
        if isinstance(record, ProjectCreated):
            self._token_hashes.setdefault(record.project_id, record.token_sha256)  # the first creation wins
        elif isinstance(record, ProjectConfigSet):
            try:
                self._configs[record.project_id] = parse(record.config_yaml)
            except ConfigError as exc:  # the API validated it; a bad one here is logged, not fatal
                log.error(
                    "project %s: stored config does not parse (%s); keeping the previous one", record.project_id, exc
                )
