"""What handlers need, attached to the aiohttp application."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from api.auth import PROJECT
from api.producer import Producer
from api.waiter import TaskWaiter
from memstream.settings import Settings
from projections.store import Store
from streams.embeddings import Embedder

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: Store
    producer: Producer
    waiter: TaskWaiter
    embedder: Embedder | None  # None: search ranks by words


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def project_of(request: web.Request) -> str:
    return request[PROJECT]


async def until_visible(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Read-your-writes for the few calls that promise it: poll the read model until ``check``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            # The change is in the log and will show; the caller answers anyway, so say it was late.
            log.warning("a change was not readable within %.1fs (projection lag)", timeout)
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
