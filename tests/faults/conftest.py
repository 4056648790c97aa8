"""The fault drills run on the root conftest's fixtures, over a ClickHouse of their own: a drill
takes ClickHouse away, which the embedded store every other module shares cannot be. ``store``
here is served by a ClickHouse front child process (``scripts.clickhouse_front``) and reached
through clickhouse-connect's HTTP client (one process can open one chDB data path only, so it
could not be a second embedded store).
"""

import asyncio
from collections.abc import AsyncIterator

import pytest

from projections.store import Store, open_store
from scripts.broker import free_port
from scripts.clickhouse_front import ClickHouseFront


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
