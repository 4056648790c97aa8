"""A scripted OpenAI-compatible server on loopback: answers chat completions from a queue, and
embeddings with a deterministic bag-of-words vector (texts sharing words are close).

``delay`` makes every chat answer take that long, as a hosted model's does (hundreds of ms to
seconds): an LLM that answers at once hides where a pipeline waits. ``in_flight`` and
``max_in_flight`` count the chat requests it holds at once.
"""

import asyncio
import hashlib
import json
import math
import re
import time
from typing import Any

from aiohttp import web


class ScriptedLLM:
    """Each chat completion takes the next scripted reply: a string (the message content) or an int (an HTTP error)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.replies: list[str | int] = []
        self.requests: list[dict[str, Any]] = []
        self.timeline: list[tuple[float, float]] = []  # (received, answered), monotonic, one per chat request
        self.embedding_requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: "str | int | dict") -> None:
        self.replies.extend(json.dumps(r) if isinstance(r, dict) else r for r in replies)

    def reply_to(self, body: dict[str, Any]) -> "str | int":
        """The answer to one request: the next scripted reply (a subclass may answer from ``body``)."""
        return self.replies.pop(0) if self.replies else json.dumps({"changes": [], "event_tip": "nothing new"})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.reply_to(body)
        received = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.timeline.append((received, time.monotonic()))
        if isinstance(reply, int):
            return web.json_response({"error": {"message": "scripted failure"}}, status=reply)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": "scripted",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        )

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "scripted"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


DIMENSIONS = 64


def embed(text: str) -> list[float]:
    """A unit vector with one hashed dimension per lowercase word of ``text``."""
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
