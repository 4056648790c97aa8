"""``memstream mcp``: an MCP server (the official ``mcp`` SDK) giving agents a user's long-term memory.

It is a client of Memstream's own v1 HTTP API (``MEMSTREAM_API_URL``) and calls it with one
project token, so it acts for that project only and inherits the API's auth, project isolation,
read-your-writes and validation; it needs no Kafka or ClickHouse access. Transports: stdio (the
agent host spawns it) and streamable HTTP, where every request must also carry
``Authorization: Bearer <the same token>``.
"""

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

import aiohttp
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

log = logging.getLogger("memstream.mcp")

DEFAULT_API_URL = "http://127.0.0.1:8019"
TOKEN_ENV = "MEMSTREAM_MCP_TOKEN"
API_URL_ENV = "MEMSTREAM_API_URL"
REQUEST_TIMEOUT = 120.0  # above the API's own wait for an extraction (MEMSTREAM_WAIT_TIMEOUT, 30 s by default)
MAX_COUNT = 10_000

INSTRUCTIONS = (
    "Long-term memory about the users of this app (one Memstream project). Each user is a UUID. "
    "Save what a user said with save_memory; read what is known with get_profile (facts by topic), "
    "search_memories (past events matching a query) or get_context (a ready-to-paste memory block for a prompt); "
    "erase a user with forget_user."
)


class ConfigError(Exception):
    """The server cannot start: no token, an unreadable token file, or a token the API refuses."""


class TokenRefused(ToolError):
    """The API answered HTTP 401 to this server's token."""


class Message(BaseModel):
    role: Literal["user", "assistant"] = Field(description="who said it: the user, or the assistant (the agent)")
    content: str = Field(min_length=1, description="what was said, as plain text")


UserId = Annotated[UUID, Field(description="the user's id, a UUID chosen by the app")]
Topics = Annotated[list[str] | None, Field(description="profile topics, e.g. ['interest', 'work']")]


class MemstreamApi:
    """The v1 endpoints the tools call, with the project token; an error envelope becomes a ToolError."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | list[str]] | None = None,
        body: Any = None,
    ) -> Any:
        """The envelope's ``data``; raises ToolError with the API's errmsg otherwise."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        query = [(k, v) for k, vs in (params or {}).items() for v in ([vs] if isinstance(vs, str) else vs)]
        try:
            async with self._session.request(
                method, self.base + path, params=query, json=body, headers=self._headers
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ToolError(f"the Memstream API at {self.base} did not answer: {exc or type(exc).__name__}") from None
        try:
            envelope = json.loads(text)
        except ValueError:
            raise ToolError(f"the Memstream API answered HTTP {status} without JSON: {text[:200]}") from None
        if status == 401:
            raise TokenRefused("the Memstream API refused this server's project token (HTTP 401)")
        if status != 200 or envelope.get("errno", 0) != 0:
            errno = envelope.get("errno", status)
            raise ToolError(f"{envelope.get('errmsg') or f'HTTP {status}'} (errno {errno})")
        return envelope.get("data")

    async def check_token(self) -> None:
        """ConfigError when the API refuses the token; an unreachable API is only logged (it may start later)."""
        try:
            await self.call("GET", "/project/billing")
        except TokenRefused:
            raise ConfigError(f"the Memstream API at {self.base} refuses the token") from None
        except ToolError as exc:
            log.warning("could not check the token: %s", exc)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _topic_params(prefer_topics: list[str] | None, only_topics: list[str] | None) -> dict[str, str | list[str]]:
    params: dict[str, str | list[str]] = {}
    if prefer_topics:
        params["prefer_topics"] = prefer_topics
    if only_topics:
        params["only_topics"] = only_topics
    return params


def _slot(row: dict[str, Any]) -> dict[str, Any]:
    attributes = row.get("attributes", {})
    return {
        "id": row["id"],
        "topic": attributes.get("topic"),
        "sub_topic": attributes.get("sub_topic"),
        "content": row["content"],
        "updated_at": row.get("updated_at"),
    }


def _event(row: dict[str, Any]) -> dict[str, Any]:
    data = row.get("event_data") or {}
    return {
        "id": row["id"],
        "tip": data.get("event_tip"),
        "tags": {t["tag"]: t["value"] for t in data.get("event_tags") or []},
        "similarity": row.get("similarity"),
        "created_at": row.get("created_at"),
    }


def build_server(api: MemstreamApi) -> MCPServer:
    """The MCP server and its tools, calling ``api``."""
    server: MCPServer = MCPServer("memstream", instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)

    async def save_memory(
        user_id: UserId,
        messages: Annotated[
            list[Message], Field(min_length=1, description="the conversation turns to remember, oldest first")
        ],
        flush: Annotated[
            bool,
            Field(
                description="extract memories now instead of when the user's buffer fills; "
                "set it when the profile must reflect these messages soon"
            ),
        ] = False,
        wait: Annotated[
            bool,
            Field(description="with flush: return only once the extraction is done, with what it changed"),
        ] = True,
    ) -> dict[str, Any]:
        """Remember a piece of conversation with a user: it is stored as a chat and later turned into
        profile facts and an event (a user first seen here is registered). Returns the blob id and the task id; with flush=true (and wait=true)
        also the extraction's results, after which get_profile, search_memories and get_context see them."""
        uid = str(user_id)
        blob = {"blob_type": "chat", "blob_data": {"messages": [m.model_dump() for m in messages]}}
        inserted = await api.call("POST", f"/blobs/insert/{uid}", params={"wait_process": _flag(wait)}, body=blob)
        saved: dict[str, Any] = {"blob_id": inserted["id"], "task_id": inserted.get("task_id"), "flushed": False}
        if inserted.get("chat_results"):
            saved["results"] = inserted["chat_results"]
        if flush:
            results = await api.call("POST", f"/users/buffer/{uid}/chat", params={"wait_process": _flag(wait)})
            saved["flushed"] = True
            if wait:
                saved["results"] = results
        return saved

    async def get_profile(
        user_id: UserId,
        prefer_topics: Topics = None,
        only_topics: Topics = None,
        topk: Annotated[int | None, Field(ge=1, le=MAX_COUNT, description="at most this many facts")] = None,
        max_token_size: Annotated[
            int | None, Field(ge=1, le=MAX_COUNT, description="at most this many tokens of facts, all together")
        ] = None,
        max_subtopic_size: Annotated[
            int | None, Field(ge=1, le=MAX_COUNT, description="at most this many sub_topics per topic")
        ] = None,
        topic_limits: Annotated[
            dict[str, Annotated[int, Field(ge=1, le=MAX_COUNT)]] | None,
            Field(description="per topic, at most this many sub_topics (overrides max_subtopic_size)"),
        ] = None,
    ) -> dict[str, Any]:
        """What is known about a user: facts (slots) each under a topic and sub_topic, e.g.
        interest / music: "loves jazz". prefer_topics puts those topics first, only_topics keeps only them.
        An unknown user has no facts."""
        params = _topic_params(prefer_topics, only_topics)
        for name, value in (
            ("topk", topk),
            ("max_token_size", max_token_size),
            ("max_subtopic_size", max_subtopic_size),
        ):
            if value is not None:
                params[name] = str(value)
        if topic_limits:
            params["topic_limits_json"] = json.dumps(topic_limits)
        data = await api.call("GET", f"/users/profile/{user_id}", params=params)
        return {"profiles": [_slot(row) for row in data["profiles"]]}

    async def search_memories(
        user_id: UserId,
        query: Annotated[str, Field(min_length=1, pattern=r"\S", description="what to look for, in plain words")],
        top_k: Annotated[int, Field(ge=1, le=100, description="at most this many events")] = 10,
        similarity_threshold: Annotated[
            float | None, Field(ge=0, le=1, description="leave out events scoring below this (0 to 1)")
        ] = None,
        time_range_in_days: Annotated[
            int | None, Field(ge=1, le=36_500, description="only events from the last this many days")
        ] = None,
    ) -> dict[str, Any]:
        """Search the user's past events (one per extracted conversation: a short tip of what happened,
        with tags) for a query, best match first. `search` says how they were ranked: semantic
        (embeddings) or lexical (shared words)."""
        params: dict[str, str | list[str]] = {"query": query, "topk": str(top_k)}
        if similarity_threshold is not None:
            params["similarity_threshold"] = str(similarity_threshold)
        if time_range_in_days is not None:
            params["time_range_in_days"] = str(time_range_in_days)
        data = await api.call("GET", f"/users/event/search/{user_id}", params=params)
        return {"search": data.get("search"), "events": [_event(row) for row in data["events"]]}

    async def get_context(
        user_id: UserId,
        max_token_size: Annotated[
            int, Field(ge=1, le=MAX_COUNT, description="the longest the block may be, in tokens (cl100k)")
        ] = 1000,
        chats: Annotated[
            list[Message] | None,
            Field(description="the conversation's latest messages: events and facts about them are chosen first"),
        ] = None,
        prefer_topics: Topics = None,
        only_topics: Topics = None,
    ) -> str:
        """A memory block to put into a system prompt before answering the user: their profile, relevant
        past events, and recent chats not yet extracted. Never longer than max_token_size."""
        params = _topic_params(prefer_topics, only_topics)
        params["max_token_size"] = str(max_token_size)
        if chats:
            params["chats_str"] = json.dumps([m.model_dump() for m in chats])
        data = await api.call("GET", f"/users/context/{user_id}", params=params)
        return str(data["context"])

    async def forget_user(user_id: UserId) -> dict[str, Any]:
        """Erase a user and everything remembered about them (chats, profile, events) from this project.
        Irreversible. Returns once the user is gone; an error when there is no such user."""
        await api.call("DELETE", f"/users/{user_id}")
        return {"deleted": str(user_id)}

    tools: list[tuple[Callable[..., Awaitable[Any]], ToolAnnotations]] = [
        (save_memory, ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)),
        (get_profile, read_only),
        (search_memories, read_only),
        (get_context, read_only),
        (forget_user, ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)),
    ]
    for fn, annotations in tools:
        server.add_tool(fn, annotations=annotations)
    return server


def read_token(token_file: Path | None, env: Mapping[str, str] = os.environ) -> str:
    """The project token: from ``token_file`` when given, else ``MEMSTREAM_MCP_TOKEN``."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"the token file {token_file} is empty")
        return token
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"no project token: set {TOKEN_ENV} or pass --token-file")
    return token


class BearerGate:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps({"error": "invalid_token", "error_description": "a valid project token is required"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer error="invalid_token"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


async def run(transport: Literal["stdio", "http"], token: str, api_url: str, host: str, port: int) -> None:
    api = MemstreamApi(api_url, token)
    try:
        await api.check_token()
        server = build_server(api)
        if transport == "stdio":
            await server.run_stdio_async()
            return
        import uvicorn

        app = server.streamable_http_app(stateless_http=True, json_response=True, host=host)
        config = uvicorn.Config(BearerGate(app, token), host=host, port=port, log_level="warning")
        log.info("MCP (streamable HTTP) at http://%s:%d/mcp, for the API at %s", host, port, api_url)
        await uvicorn.Server(config).serve()
    finally:
        await api.close()
