"""Real parts for the integration tests and drills: one local broker and one embedded ClickHouse
per session, and a Memstream stack per test module (its own topics, app id and port, so modules
never share state).

A module chooses its stack and scripted LLM with markers:
``pytestmark = [pytest.mark.stack_settings.with_args(...), pytest.mark.llm_server.with_args(SomeLLM)]``,
where the settings are a dict or a callable of the module's LLM server, and the server a ScriptedLLM
subclass (``with_args``, because a mark called with one class or function decorates it)."""

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store, open_store
from scripts.broker import LocalBroker, free_port
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api
from tests.support.history import make_history
from tests.support.stack import TOKEN, started

_counter = itertools.count()


def marked(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    """The argument of the module's ``name`` marker, or ``default``."""
    marker = request.node.get_closest_marker(name)
    return marker.args[0] if marker else default


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
            "topic_ingest": f"t{n}.ingest",
            "topic_state": f"t{n}.state",
            "topic_progress": f"t{n}.progress",
            "topic_memory": f"t{n}.memory",
            "topic_dead_letter": f"t{n}.dead-letter",
            "topic_projects": f"t{n}.projects",
            "app_id": f"memstream-t{n}",
            "projection_group": f"projections-t{n}",
        }
        base = {
            "kafka_bootstrap": broker.bootstrap,
            "root_token": TOKEN,
            "port": free_port(),
            "topic_partitions": 2,
            "llm_backoff": 0.05,
            "wait_timeout": 30.0,
        }
        return Settings(**{**base, **names, **overrides})

    return make


@pytest.fixture(scope="module")
async def llm(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedLLM]:
    """The module's scripted LLM server (its ``llm_server`` marker's class, or ScriptedLLM)."""
    server = marked(request, "llm_server", ScriptedLLM)()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def stack(
    make_settings: Callable[..., Settings], store: Store, llm: ScriptedLLM, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """The module's stack, with its ``stack_settings`` marker's overrides."""
    overrides = marked(request, "stack_settings", {})
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


@pytest.fixture(scope="module")
async def history(api: Api, llm: ScriptedLLM, stack: Stack) -> None:
    """The module's stack holding ``make_history``'s records, all projected (the module marks its
    stack with ``stack_settings(history_settings)``)."""
    await make_history(api, llm, stack)
