"""The real parts a benchmark runs against, as separate processes in one temporary directory.

``Services`` starts the local broker, ClickHouse, ``memstream api`` processes and ``memstream
worker`` processes, and stops every one of them however the benchmark ends (the ``memstream``
processes together, then ClickHouse, then the broker).
ClickHouse is embedded chDB when only one process uses it (it then owns the data path); when
several do (API + worker, two workers) they share it through the chDB HTTP front
(``scripts/clickhouse_front.py``), as they would share a ClickHouse server.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from memstream.settings import Settings
from scripts.broker import LocalBroker, free_port, wait_for_port

T = TypeVar("T")
TOKEN = "bench-root-token"
REPO = Path(__file__).resolve().parents[2]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``MEMSTREAM_*`` variables a ``memstream`` process reads."""
    return {
        f"MEMSTREAM_{name.upper()}": str(value) for name, value in settings.model_dump().items() if value is not None
    }


class MemstreamProcess:
    """``memstream api`` or ``memstream worker`` as a child process in its own session, logging to a file."""

    def __init__(self, role: str, index: int, settings: Settings, log_dir: Path) -> None:
        self.role, self.settings = role, settings
        self.name = f"{role}-{index}"
        self.log_file = log_dir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        command = [sys.executable, "-c", "from memstream.cli import main; main()", self.role]
        with open(self.log_file, "ab") as out:
            self._process = subprocess.Popen(
                command,
                cwd=REPO,
                env={**os.environ, **settings_env(self.settings)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_listening(self, timeout: float = 90.0) -> None:
        """Block until the API answers on its port (it migrates and creates topics before listening)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                wait_for_port(self.settings.host, self.settings.port, 0.5)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"memstream {self.role} not listening after {timeout:g}s; see {self.log_file}"
                    ) from None

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"memstream {self.role} exited with {self._process.returncode}:\n{tail}")

    def stop(self, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Services:
    """Broker, ClickHouse, ``api`` API processes and ``workers`` worker processes under ``workdir``.

    ``front`` serves ClickHouse through the front even to a single process (to compare like with
    like against a shared topology). ``overrides`` are ``Settings`` fields for every process
    (topics, thresholds, the LLM URL…). ``urls`` are the API processes' base URLs; ``settings`` is
    what the first API process runs with.
    """

    def __init__(self, workdir: Path, *, api: int = 1, workers: int = 0, front: bool = False, **overrides: Any) -> None:
        if api < 1:
            raise ValueError("every topology has an API process: the generator talks to it")
        self.workdir, self.api_count, self.worker_count, self.overrides = workdir, api, workers, overrides
        self.use_front = front or api + workers > 1
        self.broker = LocalBroker(workdir / "broker", free_port())
        self.front: Any = None  # scripts.clickhouse_front.ClickHouseFront, when several processes share ClickHouse
        self.processes: list[MemstreamProcess] = []
        self.settings = Settings()
        self.urls: list[str] = []
        self._url = ""

    def _clickhouse_url(self) -> str:
        path = self.workdir / "clickhouse"
        if not self.use_front:
            return f"chdb://{path}"
        from scripts.clickhouse_front import ClickHouseFront  # only the sharing topologies need it

        self.front = ClickHouseFront(path, free_port())
        self.front.start()
        return self.front.url

    def _settings(self, port: int) -> Settings:
        base = {
            "kafka_bootstrap": self.broker.bootstrap,
            "clickhouse_url": self._url,
            "root_token": TOKEN,
            "port": port,
        }
        return Settings(**{**base, **self.overrides})

    def _start(self, role: str, index: int, settings: Settings) -> MemstreamProcess:
        process = MemstreamProcess(role, index, settings, self.workdir)
        self.processes.append(process)
        process.start()
        return process

    async def __aenter__(self) -> "Services":
        try:
            await asyncio.to_thread(self.broker.start)
            self._url = await asyncio.to_thread(self._clickhouse_url)
            # API processes first, one after another: each creates the topics and migrates before
            # it listens, so the workers find both ready and no two processes migrate at once.
            for index in range(self.api_count):
                settings = self._settings(free_port())
                await asyncio.to_thread(self._start("api", index, settings).wait_listening)
                self.urls.append(f"http://{settings.host}:{settings.port}/api/v1")
                if index == 0:
                    self.settings = settings
            for index in range(self.worker_count):
                self._start("worker", index, self._settings(free_port()))
            if self.worker_count:
                await wait_for_group(self.settings, self.settings.app_id, self.worker_count)
                await wait_for_group(self.settings, self.settings.projection_group, self.worker_count)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The memstream processes stop together (each waits for its own graceful shutdown), then
        # what they all use: ClickHouse, then the broker.
        await asyncio.gather(*(asyncio.to_thread(process.stop) for process in self.processes))
        self.processes.clear()
        if self.front is not None:
            await asyncio.to_thread(self.front.stop)
            self.front = None
        await asyncio.to_thread(self.broker.stop)

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def cpu_times(self) -> dict[str, float]:
        """CPU seconds used so far by this process (``client``, the load generator), the broker and each child."""
        times = {"client": time.process_time(), "broker": cpu_seconds(int(self.broker.pid_file.read_text()))}
        if self.broker.proxy_pid:
            times["proxy"] = cpu_seconds(self.broker.proxy_pid)
        if self.front is not None and self.front.pid:
            times["front"] = cpu_seconds(self.front.pid)
        times.update({p.name: cpu_seconds(p.pid) for p in self.processes if p.pid})
        return times


async def with_cpu(services: Services, run: Awaitable[T]) -> tuple[T, dict[str, float]]:
    """Await ``run`` and say how busy each process was meanwhile, in cores (1.0 = one core all the time)."""
    before, clock = services.cpu_times(), time.monotonic()
    result = await run
    after, elapsed = services.cpu_times(), time.monotonic() - clock
    return result, {f"{name}_cpu": round((after[name] - before.get(name, 0.0)) / elapsed, 2) for name in after}


async def idle_cpu(services: Services, seconds: float) -> dict[str, float]:
    """How busy each process is with no load at all, in cores: the floor under every measurement
    (consumers polling an empty topic cost CPU when the broker answers fetches at once)."""
    _, cpu = await with_cpu(services, asyncio.sleep(seconds))
    return cpu


async def wait_for_group(settings: Settings, group: str, members: int, timeout: float = 90.0) -> None:
    """Wait until consumer group ``group`` is stable with ``members`` members (workers have their partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            described = await admin.describe_consumer_groups([group])
            state = described[0].groups[0] if described and described[0].groups else None
            if state is not None and state[2] == "Stable" and len(state[5]) == members:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} not stable with {members} members after {timeout:g}s: {state}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def wait_caught_up(settings: Settings, group: str, topics: list[str], timeout: float = 300.0) -> None:
    """Wait until ``group`` has committed every record of ``topics`` that exists now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await admin.start()
    clock = time.monotonic()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions)
        while True:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            if all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in partitions):
                return
            if time.monotonic() - clock > timeout:
                raise TimeoutError(f"group {group} has not caught up with {topics} after {timeout:g}s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
        await consumer.stop()


class FinishedTasks:
    """Tails the memory topic (committed) from its end and notes when each ``TaskFinished`` of the
    ``watched`` task ids comes; a benchmark adds ids as the API hands them out."""

    def __init__(self, settings: Settings) -> None:
        self.watched: set[str] = set()
        self.finished: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            settings.topic_memory,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self._tail: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "FinishedTasks":
        await self._consumer.start()
        await self._consumer.seek_to_end()
        for tp in self._consumer.assignment():
            await self._consumer.position(tp)
        self._tail = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tail is not None:
            self._tail.cancel()
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            for messages in (await self._consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    if b'"task_finished"' in message.value:
                        for task in json.loads(message.value)["task_ids"]:
                            self.finished.setdefault(task, time.monotonic())
                        self._changed.set()

    async def wait(self, expected: int, timeout: float) -> None:
        """Until ``expected`` ids are watched and each of them finished; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while len(self.watched) < expected or not self.watched <= self.finished.keys():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                done = len(self.watched & self.finished.keys())
                raise TimeoutError(f"{done} of {len(self.watched)} tasks finished after {timeout:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
