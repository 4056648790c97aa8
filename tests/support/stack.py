"""The test stack's root token, and starting a stack of one's own."""

from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store

TOKEN = "test-root-token"


async def started(settings: Settings, store: Store) -> Stack:
    stack = Stack(settings, store)
    await stack.start()
    return stack
