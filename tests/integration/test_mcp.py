"""``memstream mcp`` driven by the MCP SDK's own client over stdio and streamable HTTP, against the
real stack: the tools and their schemas, save → profile / search / context, forget, tool errors,
a refused token, and acting for the token's project only."""

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import CallToolResult, TextContent

from memstream.projects_admin import create_project
from memstream.stack import Stack
from scripts.broker import free_port
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, eventually, new_user
from tests.support.memory import change, profiles
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url})

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-c", "from memstream.cli import main; main()", "mcp"]
DEADLINE = 60.0  # seconds for any one MCP exchange, start-up included
TOOLS = {"save_memory", "get_profile", "search_memories", "get_context", "forget_user"}


def server_env(stack: Stack, token: str) -> dict[str, str]:
    return {"MEMSTREAM_API_URL": stack.url, "MEMSTREAM_MCP_TOKEN": token, "PYTHONPATH": str(ROOT)}


def stdio_client(stack: Stack, token: str = TOKEN) -> Client:
    params = StdioServerParameters(
        command=COMMAND[0], args=[*COMMAND[1:], "--transport", "stdio"], env=server_env(stack, token), cwd=ROOT
    )
    return Client(params, read_timeout_seconds=DEADLINE)


def http_client(url: str, token: str) -> Client:
    transport = streamable_http_client(
        url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    )
    return Client(transport, read_timeout_seconds=DEADLINE)


@pytest.fixture(scope="module")
async def http_url(stack: Stack) -> AsyncIterator[str]:
    """A ``memstream mcp --transport http`` process on a free loopback port; its endpoint URL. (Async:
    the stack it calls runs on this event loop.)"""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--transport",
        "http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={**os.environ, **server_env(stack, TOKEN)},
        cwd=ROOT,
    )
    try:

        async def listening() -> bool:
            assert process.returncode is None, f"the MCP HTTP server exited with {process.returncode}"
            try:
                async with httpx2.AsyncClient(timeout=1.0) as probe:
                    await probe.get(url)
                return True
            except httpx2.TransportError:
                return False

        await eventually(listening, timeout=DEADLINE, what="the MCP HTTP server listening")
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest, stack: Stack) -> Any:
    """Open an SDK client on the parametrized transport, acting with the root token."""
    if request.param == "stdio":
        return lambda: stdio_client(stack)
    url = request.getfixturevalue("http_url")
    return lambda: http_client(url, TOKEN)


@asynccontextmanager
async def session(open_client: Any) -> AsyncIterator[Client]:
    async with asyncio.timeout(DEADLINE), open_client() as client:
        yield client


async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    async with asyncio.timeout(DEADLINE):
        return await client.call_tool(name, arguments)


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def ok(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await call(client, name, arguments)
    assert not result.is_error, text(result)
    return result.structured_content


async def test_tools_and_their_input_schemas(connect: Any) -> None:
    async with session(connect) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) >= TOOLS
    for name in TOOLS:
        schema = tools[name].input_schema
        assert tools[name].description and len(tools[name].description) > 40, name
        assert "user_id" in schema["required"], name
        assert schema["properties"]["user_id"]["format"] == "uuid", name
    save = tools["save_memory"].input_schema
    assert set(save["required"]) == {"user_id", "messages"}
    message = save["$defs"][save["properties"]["messages"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert message["properties"]["role"]["enum"] == ["user", "assistant"]
    assert set(message["required"]) == {"role", "content"}
    assert save["properties"]["flush"]["type"] == "boolean" and save["properties"]["wait"]["default"] is True
    search = tools["search_memories"].input_schema
    assert set(search["required"]) == {"user_id", "query"}
    assert (search["properties"]["top_k"]["minimum"], search["properties"]["top_k"]["maximum"]) == (1, 100)
    context = tools["get_context"].input_schema
    assert context["properties"]["max_token_size"]["default"] == 1000
    assert "chats" in context["properties"] and "topic_limits" in tools["get_profile"].input_schema["properties"]
    assert tools["forget_user"].annotations and tools["forget_user"].annotations.destructive_hint is True
    assert tools["get_profile"].annotations and tools["get_profile"].annotations.read_only_hint is True


async def test_save_read_search_context_forget(connect: Any, llm: ScriptedLLM, api: Api) -> None:
    user = new_user()
    llm.script(
        {"changes": [change("interest", "music", "loves jazz")], "event_tip": "talked about a jazz club in Paris"}
    )
    async with session(connect) as client:
        messages = [
            {"role": "user", "content": "I went to a jazz club in Paris last night."},
            {"role": "assistant", "content": "Sounds great! Which one?"},
        ]
        saved = await ok(client, "save_memory", {"user_id": user, "messages": messages, "flush": True, "wait": True})
        assert saved["flushed"] is True and saved["blob_id"] and saved["results"], saved

        profile = await ok(client, "get_profile", {"user_id": user})
        assert [(p["topic"], p["sub_topic"], p["content"]) for p in profile["profiles"]] == [
            ("interest", "music", "loves jazz")
        ]
        assert (await ok(client, "get_profile", {"user_id": user, "only_topics": ["work"]}))["profiles"] == []

        found = await ok(client, "search_memories", {"user_id": user, "query": "jazz club", "top_k": 5})
        assert [e["tip"] for e in found["events"]] == ["talked about a jazz club in Paris"]
        assert found["search"] in {"semantic", "lexical"}

        context = await ok(client, "get_context", {"user_id": user, "max_token_size": 500})
        assert "loves jazz" in context["result"]
        chats = [{"role": "user", "content": "any music tips?"}]
        assert "loves jazz" in (await ok(client, "get_context", {"user_id": user, "chats": chats}))["result"]

        assert (await ok(client, "forget_user", {"user_id": user})) == {"deleted": user}
        assert (await ok(client, "get_profile", {"user_id": user}))["profiles"] == []
        assert await profiles(api, user) == []

        again = await call(client, "forget_user", {"user_id": user})
        assert again.is_error and f"user {user} not found (errno 404)" in text(again)


async def test_save_without_flush_is_working_memory(connect: Any, api: Api) -> None:
    user = new_user()
    async with session(connect) as client:
        saved = await ok(
            client, "save_memory", {"user_id": user, "messages": [{"role": "user", "content": "I am Bob"}]}
        )
        assert saved["flushed"] is False and saved["task_id"], saved
        assert "I am Bob" in (await ok(client, "get_context", {"user_id": user}))["result"]
    assert await profiles(api, user) == []


async def test_bad_arguments_are_tool_errors(connect: Any) -> None:
    async with session(connect) as client:
        not_uuid = await call(client, "get_profile", {"user_id": "alice"})
        assert not_uuid.is_error and "user_id" in text(not_uuid)
        bad_role = await call(
            client, "save_memory", {"user_id": new_user(), "messages": [{"role": "system", "content": "x"}]}
        )
        assert bad_role.is_error and "role" in text(bad_role)
        too_many = await call(client, "search_memories", {"user_id": new_user(), "query": "x", "top_k": 1000})
        assert too_many.is_error and "top_k" in text(too_many)


async def run_to_exit(env: dict[str, str], *args: str) -> tuple[int | None, bytes, bytes]:
    """Run ``memstream mcp`` with ``env`` (stdin closed) until it exits: its status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(DEADLINE):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, out, err


async def test_a_wrong_token_is_refused(stack: Stack) -> None:
    for transport in ("stdio", "http"):
        env = {**os.environ, **server_env(stack, "sk-wrong-token")}
        status, out, err = await run_to_exit(env, "--transport", transport, "--port", str(free_port()))
        assert (status, out) == (2, b""), err
        assert b"refuses the token" in err and b"sk-wrong-token" not in err


async def test_no_token_is_refused(stack: Stack, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEMSTREAM_MCP_TOKEN"}
    env |= {"MEMSTREAM_API_URL": stack.url, "PYTHONPATH": str(ROOT)}
    status, _, err = await run_to_exit(env)
    assert status == 2 and b"MEMSTREAM_MCP_TOKEN" in err
    status, _, err = await run_to_exit(env, "--token-file", str(tmp_path / "missing"))
    assert status == 2 and b"cannot read the token file" in err


async def test_a_wrong_bearer_is_refused_over_http(http_url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as raw:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Token {TOKEN}"}):
            response = await raw.post(
                http_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers
            )
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception) as refused:  # noqa: B017 - the SDK's error for an HTTP 401 varies by transport step
        async with session(lambda: http_client(http_url, "sk-wrong")):
            pass
    assert not isinstance(refused.value, TimeoutError)


async def test_acts_for_the_token_project_only(stack: Stack, llm: ScriptedLLM, api: Api, tmp_path: Path) -> None:
    token = await create_project(stack.settings, f"mcp_{uuid.uuid4().hex[:8]}")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    user = new_user()
    llm.script({"changes": [change("work", "title", "a pilot")], "event_tip": "spoke about flying"})
    params = StdioServerParameters(
        command=COMMAND[0],
        args=[*COMMAND[1:], "--transport", "stdio", "--token-file", str(token_file)],
        env={"MEMSTREAM_API_URL": stack.url, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    async with session(lambda: Client(params, read_timeout_seconds=DEADLINE)) as client:
        await ok(
            client,
            "save_memory",
            {"user_id": user, "messages": [{"role": "user", "content": "I fly planes"}], "flush": True},
        )
        slots = (await ok(client, "get_profile", {"user_id": user}))["profiles"]
        assert [s["content"] for s in slots] == ["a pilot"]
    assert await profiles(api, user) == []  # the root token's project does not see it
    other = Api(stack.url, token)
    try:
        assert [p["content"] for p in await eventually(lambda: profiles(other, user), what="the slot")] == ["a pilot"]
    finally:
        await other.close()
    async with session(lambda: stdio_client(stack)) as client:
        assert (await ok(client, "get_profile", {"user_id": user}))["profiles"] == []
