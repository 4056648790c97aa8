"""Running the parts together: worker (the owner stage + the projection writer) and/or API.

``memstream dev`` runs both in one process over embedded ClickHouse; ``memstream worker`` and
``memstream api`` run one each against external Kafka and ClickHouse; the integration tests
start several stacks in one process, sharing one broker and one store.
"""

import asyncio
import logging

from aiohttp import web

from api.app import create_app
from api.deps import Deps
from api.positions import Consistency, LogEnds, Positions
from api.producer import Producer
from api.read_cache import ReadCache
from api.user_reads import UserReads
from api.waiter import TaskWaiter
from memstream import metrics
from memstream.metrics import Metrics
from memstream.settings import Settings
from projections.dead_letters import dead_letters_by_reason
from projections.schema import migrate
from projections.store import Store
from projections.writer import ProjectionWriter
from streams.embeddings import Embedder, make_embedder
from streams.extraction import Extractor
from streams.jobs import Jobs, RetryPolicy
from streams.llm import LLMExtractor
from streams.observe import CallObserver
from streams.offline import OfflineExtractor
from streams.owner import Owner
from streams.project_config import ProjectConfig
from streams.projects import ProjectDirectory
from streams.runtime.lag import lags
from streams.runtime.stage import OwnerStage
from streams.topics import ensure_topics

log = logging.getLogger(__name__)
READY_TIMEOUT = 20.0  # seconds a starting worker waits for its first partitions


def make_extractor(settings: Settings, observer: CallObserver | None = None) -> Extractor:
    if settings.llm_base_url:
        log.info("extracting with %s at %s", settings.llm_model, settings.llm_base_url)
        return LLMExtractor(
            settings.llm_base_url, settings.llm_api_key, settings.llm_model, settings.llm_timeout, observer
        )
    log.warning("no LLM configured (MEMSTREAM_LLM_BASE_URL): using the deterministic offline extractor")
    return OfflineExtractor()


class Stack:
    def __init__(self, settings: Settings, store: Store, worker: bool = True, api: bool = True) -> None:
        self.settings, self.store = settings, store
        self.run_worker, self.run_api = worker, api
        self.stage: OwnerStage | None = None
        self.writer: ProjectionWriter | None = None
        self._runner: web.AppRunner | None = None
        self._producer: Producer | None = None
        self._waiter: TaskWaiter | None = None
        self._ends: dict[str, LogEnds] = {}
        self._positions: Positions | None = None
        self.directory = ProjectDirectory(settings.kafka_bootstrap, settings.topic_projects)
        self.metrics = Metrics()  # this stack's registry: GET /metrics on the API, or the worker's own port
        self._metrics_runner: web.AppRunner | None = None
        self.embedder: Embedder | None = make_embedder(settings, self.metrics)
        self.metrics.watch(
            lags=lambda: lags(settings),
            projection_group=settings.projection_group,
            dead_letters=lambda: dead_letters_by_reason(store),
            buffers=lambda: self.stage.buffers_open() if self.stage else {},
        )

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def metrics_url(self) -> str | None:
        """The worker's own metrics endpoint, when it serves one (a worker without the API)."""
        if self._metrics_runner is None:
            return None
        host, port = self._metrics_runner.addresses[0][:2]
        return f"http://{host}:{port}/metrics"

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await migrate(self.store)
        await self.directory.start()
        if self.run_worker:
            await self.start_worker()
        if self.run_api:
            await self._start_api()
        elif self.run_worker and self.settings.metrics_port is not None:  # with the API, its /metrics covers all
            self._metrics_runner = await metrics.serve(self.metrics, self.settings.host, self.settings.metrics_port)

    async def project_known(self, project_id: str) -> bool:
        """Whether records may name ``project_id``: the root token's project, or one created."""
        if project_id == self.settings.default_project or self.directory.exists(project_id):
            return True
        await self.directory.catch_up()
        return self.directory.exists(project_id)

    async def project_config(self, project_id: str) -> ProjectConfig:
        await self.directory.catch_up()  # a config acknowledged before the job started is the one it uses
        return self.directory.config(project_id)

    async def start_worker(self) -> None:
        settings = self.settings
        limits = settings.limits()
        jobs = Jobs(
            make_extractor(settings, self.metrics),
            self.embedder,
            self.project_config,
            RetryPolicy(settings.llm_max_attempts, settings.llm_backoff),
            limits,
        )
        self.stage = OwnerStage(settings, Owner(limits, settings.max_queued), jobs, self.project_known, self.metrics)
        await self.stage.start()
        try:  # a worker that joins a group whose partitions other workers hold gets none: that is fine too
            await asyncio.wait_for(self.stage.ready.wait(), READY_TIMEOUT)
        except TimeoutError:
            log.warning("the owner stage has no running partition after %.0fs; going on", READY_TIMEOUT)
        self.writer = ProjectionWriter(settings, self.store)
        await self.writer.start()

    async def stop_worker(self) -> None:
        if self.writer:
            await self.writer.stop()
            self.writer = None
        if self.stage:
            await self.stage.stop()
            self.stage = None

    def health(self) -> list[str]:
        """Why this process is not doing its work, one reason per part; empty when all is well."""
        parts = [self.stage, self.writer] if self.run_worker else []
        return [reason for part in parts if part is not None and (reason := part.health())]

    async def _start_api(self) -> None:
        s = self.settings
        self._producer = Producer(s.kafka_bootstrap, s.api_transactional_id(), s.produce_timeout)
        await self._producer.start()
        self._waiter = TaskWaiter(s.kafka_bootstrap, s.topic_memory)
        await self._waiter.start()
        self._ends = {
            topic: LogEnds(s.kafka_bootstrap, topic, s.topic_partitions) for topic in (s.topic_ingest, s.topic_projects)
        }
        for ends in self._ends.values():
            await ends.start()
        cache = ReadCache(s.read_cache_mb * 2**20, self.metrics.read_cache)
        self._positions = Positions(s.kafka_bootstrap, s.topic_progress, s.topic_memory, cache)
        await self._positions.start()
        consistency = Consistency(
            self._ends, self._positions, s.topic_ingest, s.topic_memory, s.topic_partitions, s.read_your_writes_timeout
        )
        deps = Deps(
            s,
            self.store,
            self._producer,
            self._waiter,
            consistency,
            self.embedder,
            self.health,
            self.metrics,
            UserReads(self.store, cache),
        )
        app = create_app(deps, self.directory)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()

    async def stop(self) -> None:
        if self._metrics_runner:
            await self._metrics_runner.cleanup()
        if self._runner:
            await self._runner.cleanup()
        if self._positions:
            await self._positions.stop()
        for ends in self._ends.values():
            await ends.stop()
        if self._waiter:
            await self._waiter.stop()
        if self._producer:
            await self._producer.stop()
        await self.stop_worker()
        await self.directory.stop()
