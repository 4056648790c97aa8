"""The test stack's root token, starting a stack of one's own, and a migrated store."""

import contextlib
from collections.abc import AsyncIterator

from memstream.settings import Settings
from memstream.stack import Stack
from projections.schema import migrate
from projections.store import Store, open_store

TOKEN = "test-root-token"


async def started(settings: Settings, store: Store) -> Stack:
    stack = Stack(settings, store)
    await stack.start()
    return stack


@contextlib.asynccontextmanager
async def migrated_store(url: str, database: str) -> AsyncIterator[Store]:
    """A store on ``url`` with the read models migrated as ``memstream migrate`` does; closed after."""
    store = await open_store(url, database)
    try:
        await migrate(store)
        yield store
    finally:
        await store.close()
