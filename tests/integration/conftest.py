"""Real parts for integration tests: one local broker and one embedded ClickHouse per session,
and a Memstream stack per test module (its own topics, app id and port, so modules never share
state)."""

import itertools
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store, open_store
from scripts.broker import LocalBroker, free_port
from tests.support.client import Api
from scripts.scripted_llm import ScriptedLLM

TOKEN = "test-root-token"
_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> "LocalBroker":
    broker = LocalBroker(tmp_path_factory.mktemp("broker"), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    store = await open_store(f"chdb://{tmp_path_factory.mktemp('clickhouse')}", "memstream_test")
    yield store
    await store.close()


@pytest.fixture(scope="session")
def make_settings(broker: LocalBroker) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        n = next(_counter)
        names = {
            "topic_ingest": f"t{n}.ingest", "topic_state": f"t{n}.state", "topic_progress": f"t{n}.progress",
            "topic_memory": f"t{n}.memory", "topic_dead_letter": f"t{n}.dead-letter",
            "topic_projects": f"t{n}.projects",
            "app_id": f"memstream-t{n}", "projection_group": f"projections-t{n}",
        }
        base = {"kafka_bootstrap": broker.bootstrap, "root_token": TOKEN, "port": free_port(),
                "topic_partitions": 2, "llm_backoff": 0.05, "wait_timeout": 30.0}
        return Settings(**{**base, **names, **overrides})

    return make


@pytest.fixture(scope="module")
async def llm(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedLLM]:
    """The module's scripted LLM server; a module can set ``LLM_SERVER`` to a ScriptedLLM subclass."""
    server = getattr(request.module, "LLM_SERVER", ScriptedLLM)()
    await server.start()
    yield server
    await server.stop()


async def started(settings: Settings, store: Store) -> Stack:
    stack = Stack(settings, store)
    await stack.start()
    return stack


@pytest.fixture(scope="module")
async def stack(
    make_settings: Callable[..., Settings], store: Store, llm: ScriptedLLM, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """The module's stack; a module can set ``STACK_SETTINGS`` (a dict, or a callable of the llm server)."""
    overrides = getattr(request.module, "STACK_SETTINGS", {})
    if callable(overrides):
        overrides = overrides(llm)
    stack = await started(make_settings(**overrides), store)
    yield stack
    await stack.stop()


@pytest.fixture(scope="module")
async def api(stack: Stack) -> AsyncIterator[Api]:
    client = Api(stack.url, TOKEN)
    yield client
    await client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "integration":
            item.add_marker(pytest.mark.integration)
