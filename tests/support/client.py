"""A thin HTTP client for the tests, plus waiting on a condition with a deadline."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.1)


class Api:
    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.token = token
        self.session = aiohttp.ClientSession()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        token: str | None = None,
        params: dict | None = None,
    ) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=headers, params=params
        ) as r:
            return r.status, await r.json()

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self.call(method, path, **kwargs)
        assert status == 200 and body["errno"] == 0, (status, body)
        return body["data"]

    async def close(self) -> None:
        await self.session.close()


def new_user() -> str:
    return str(uuid.uuid4())


def chat(*lines: str) -> dict:
    return {"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": line} for line in lines]}}
