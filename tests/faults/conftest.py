"""The integration fixtures for the fault drills (broker, settings, scripted LLM, stack, client),
over a ClickHouse of this package's own.

pytest scopes a conftest's fixtures to its directory, so the fixtures named here are distinct
from the integration suite's: a session running both suites has two of each. Two brokers are
fine; two embedded ClickHouse stores are not, because one process can open one chDB data path
only. So ``store`` here is served by a ClickHouse front child process (``scripts.clickhouse_front``)
and reached through clickhouse-connect's HTTP client, which works beside the integration suite's
embedded store in either order.
"""

import asyncio
from typing import AsyncIterator

import pytest

from projections.store import Store, open_store
from scripts.broker import free_port
from scripts.clickhouse_front import ClickHouseFront
from tests.integration.conftest import api, broker, llm, make_settings, stack  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Store]:
    front = ClickHouseFront(tmp_path_factory.mktemp("clickhouse-front"), free_port())
    await asyncio.to_thread(front.start)
    try:
        store = await open_store(front.url, "memstream_test")
        yield store
        await store.close()
    finally:
        await asyncio.to_thread(front.stop)
