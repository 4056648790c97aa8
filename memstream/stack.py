"""Running the parts together: worker (Faust agents + projection writer) and/or API.

``memstream dev`` runs both in one process over embedded ClickHouse; ``memstream worker`` and
``memstream api`` run one each against external Kafka and ClickHouse; the integration tests
start several stacks in one process, sharing one broker and one store.
"""

import logging

import faust
from aiohttp import web

from api.app import create_app
from api.deps import Deps
from api.producer import Producer
from api.waiter import TaskWaiter
from memstream.settings import Settings
from projections.schema import migrate
from projections.store import Store
from projections.writer import ProjectionWriter
from streams.app import build_app
from streams.embeddings import Embedder, make_embedder
from streams.extraction import Extractor
from streams.llm import LLMExtractor
from streams.offline import OfflineExtractor
from streams.projects import ProjectDirectory
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def make_extractor(settings: Settings) -> Extractor:
    if settings.llm_base_url:
        log.info("extracting with %s at %s", settings.llm_model, settings.llm_base_url)
        return LLMExtractor(settings.llm_base_url, settings.llm_api_key, settings.llm_model, settings.llm_timeout)
    log.warning("no LLM configured (MEMSTREAM_LLM_BASE_URL): using the deterministic offline extractor")
    return OfflineExtractor()


class Stack:
    def __init__(self, settings: Settings, store: Store, worker: bool = True, api: bool = True) -> None:
        self.settings, self.store = settings, store
        self.run_worker, self.run_api = worker, api
        self.faust_app: faust.App | None = None
        self.writer: ProjectionWriter | None = None
        self._runner: web.AppRunner | None = None
        self._producer: Producer | None = None
        self._waiter: TaskWaiter | None = None
        self.directory = ProjectDirectory(settings.kafka_bootstrap, settings.topic_projects)
        self.embedder: Embedder | None = make_embedder(settings)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await migrate(self.store)
        await self.directory.start()
        if self.run_worker:
            await self.start_worker()
        if self.run_api:
            await self._start_api()

    async def start_worker(self) -> None:
        self.faust_app = build_app(self.settings, make_extractor(self.settings), self.embedder, self.directory)
        await self.faust_app.start()
        self.writer = ProjectionWriter(self.settings, self.store)
        await self.writer.start()

    async def stop_worker(self) -> None:
        if self.writer:
            await self.writer.stop()
            self.writer = None
        if self.faust_app:
            await self.faust_app.stop()
            self.faust_app = None

    async def _start_api(self) -> None:
        self._producer = Producer(self.settings.kafka_bootstrap, self.settings.produce_timeout)
        await self._producer.start()
        self._waiter = TaskWaiter(self.settings.kafka_bootstrap, self.settings.topic_memory)
        await self._waiter.start()
        app = create_app(Deps(self.settings, self.store, self._producer, self._waiter, self.embedder), self.directory)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._waiter:
            await self._waiter.stop()
        if self._producer:
            await self._producer.stop()
        await self.stop_worker()
        await self.directory.stop()
