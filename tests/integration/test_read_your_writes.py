"""Read your own writes, as Memobase's Go SDK does them: raw HTTP in the SDK's wire format, each
call made the moment the previous one answered, each sequence 20 times against the real stack.

The Go SDK's wire format where it differs from the Python and JavaScript SDKs': a chat blob's
``blob_data`` carries ``type``, ``fields`` is sent as ``null``, ``PUT /users/{uid}`` sends the data
map itself, and ``max_token_size=0`` is sent whenever an options struct has no token limit.
"""

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from api.routes.context import DEFAULT_BUDGET
from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import open_store
from scripts.bench.cluster import MemstreamProcess
from scripts.broker import free_port
from scripts.clickhouse_front import ClickHouseFront
from scripts.scripted_llm import ScriptedLLM
from streams.tokens import count_tokens
from tests.support.client import Api, new_user
from tests.support.memory import change, flush_with
from tests.support.stack import TOKEN

ROUNDS = 20
# How long a write may take to become readable here: a user delete is a ClickHouse mutation per
# table, which takes seconds on a busy 2-core machine; a 504 still fails the test.
READABLE_WITHIN = 30.0
pytestmark = pytest.mark.stack_settings.with_args(
    lambda llm: {"llm_base_url": llm.base_url, "read_your_writes_timeout": READABLE_WITHIN}
)


def go_chat(*lines: str) -> dict:
    """A chat blob as the Go SDK's ``Insert`` sends it."""
    return {
        "blob_type": "chat",
        "fields": None,
        "blob_data": {"type": "chat", "messages": [{"role": "user", "content": line} for line in lines]},
    }


async def errno_of(api: Api, method: str, path: str, **kwargs: object) -> tuple[int, object]:
    status, body = await api.call(method, path, **kwargs)
    assert status == 200, (status, body)
    return body["errno"], body["data"]


async def test_insert_then_get(api: Api) -> None:
    user = await api.ok("POST", "/users", json={"data": {}})
    for i in range(ROUNDS):
        blob_id = (await api.ok("POST", f"/blobs/insert/{user['id']}", json=go_chat(f"round {i}")))["id"]
        blob = await api.ok("GET", f"/blobs/{user['id']}/{blob_id}")
        assert blob["blob_data"]["messages"][0]["content"] == f"round {i}", i


async def test_insert_then_buffer_lists_it(api: Api) -> None:
    user = new_user()
    inserted: list[str] = []
    for i in range(ROUNDS):
        inserted.append((await api.ok("POST", f"/blobs/insert/{user}", json=go_chat(f"buffered {i}")))["id"])
        idle = (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "idle"}))["ids"]
        assert inserted[-1] in idle, (i, idle)


async def test_insert_then_delete_is_deleted_everywhere(api: Api) -> None:
    user = new_user()
    for i in range(ROUNDS):
        blob_id = (await api.ok("POST", f"/blobs/insert/{user}", json=go_chat(f"my secret word is kumquat{i}")))["id"]
        assert await errno_of(api, "DELETE", f"/blobs/{user}/{blob_id}") == (0, None), i
        assert (await errno_of(api, "GET", f"/blobs/{user}/{blob_id}"))[0] == 404, i
        context = (await api.ok("GET", f"/users/context/{user}"))["context"]
        assert f"kumquat{i}" not in context, (i, context)
    # nothing deleted is extracted: a flush now has no blob to work on
    assert await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"}) == []
    assert (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "idle"}))["ids"] == []


async def test_delete_of_an_unknown_blob_succeeds_as_memobase(api: Api) -> None:
    assert await errno_of(api, "DELETE", f"/blobs/{new_user()}/{new_user()}") == (0, None)


async def test_delete_user_then_profile_is_empty(api: Api, llm: ScriptedLLM) -> None:
    for i in range(ROUNDS):
        user = (await api.ok("POST", "/users", json={"data": {"round": i}}))["id"]
        await flush_with(api, llm, user, [change("basic_info", "name", f"Person {i}")], tip=f"named {i}")
        assert (await api.ok("GET", f"/users/profile/{user}"))["profiles"], i
        await api.ok("DELETE", f"/users/{user}")
        assert (await api.ok("GET", f"/users/profile/{user}", params={"max_token_size": "0"}))["profiles"] == [], i
        assert (await errno_of(api, "GET", f"/users/{user}"))[0] == 404, i


async def test_create_after_delete_reads_the_new_user(api: Api) -> None:
    user = new_user()
    for i in range(ROUNDS):
        assert (await api.ok("POST", "/users", json={"id": user, "data": {"round": i}}))["id"] == user
        assert (await api.ok("GET", f"/users/{user}"))["data"] == {"round": i}, i
        await api.ok("DELETE", f"/users/{user}")


async def test_put_user_with_a_bare_data_map(api: Api) -> None:
    user = (await api.ok("POST", "/users", json={"data": {}}))["id"]
    for i in range(ROUNDS):
        await api.ok("PUT", f"/users/{user}", json={"name": "Gustavo", "n": i})
        assert (await api.ok("GET", f"/users/{user}"))["data"] == {"name": "Gustavo", "n": i}, i
    await api.ok("PUT", f"/users/{user}", json={"data": {"wrapped": True}})
    assert (await api.ok("GET", f"/users/{user}"))["data"] == {"wrapped": True}


async def test_profile_moved_to_another_topic_is_deleted_by_its_old_id(api: Api) -> None:
    user = (await api.ok("POST", "/users", json={"data": {}}))["id"]
    for i in range(ROUNDS):
        slot_id = (
            await api.ok(
                "POST",
                f"/users/profile/{user}",
                json={"content": f"likes tea {i}", "attributes": {"topic": "interest", "sub_topic": f"drink{i}"}},
            )
        )["id"]
        moved = await api.ok(
            "PUT",
            f"/users/profile/{user}/{slot_id}",
            json={"content": f"barista {i}", "attributes": {"topic": "work", "sub_topic": f"job{i}"}},
        )
        assert moved["id"] == slot_id, i
        rows = (await api.ok("GET", f"/users/profile/{user}", params={"max_token_size": "0"}))["profiles"]
        assert [(r["attributes"]["topic"], r["content"]) for r in rows if r["id"] == slot_id] == [
            ("work", f"barista {i}")
        ]
        assert await errno_of(api, "DELETE", f"/users/profile/{user}/{slot_id}") == (0, None), i
        rows = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
        assert slot_id not in {r["id"] for r in rows}, i
        assert (await errno_of(api, "DELETE", f"/users/profile/{user}/{slot_id}"))[0] == 404, i


async def test_zero_token_budget_is_no_limit(api: Api) -> None:
    user = (await api.ok("POST", "/users", json={"data": {}}))["id"]
    long = "word " * 300
    for topic in ("alpha", "beta", "gamma"):
        await api.ok(
            "POST", f"/users/profile/{user}", json={"content": long, "attributes": {"topic": topic, "sub_topic": "x"}}
        )
    for i in range(ROUNDS):
        unlimited = (await api.ok("GET", f"/users/profile/{user}", params={"max_token_size": "0"}))["profiles"]
        assert len(unlimited) == 3, i
        limited = (await api.ok("GET", f"/users/profile/{user}", params={"max_token_size": "400"}))["profiles"]
        assert len(limited) == 1, i
        # on context, 0 is "the default budget", as Memobase's server takes it there
        context = (await api.ok("GET", f"/users/context/{user}", params={"max_token_size": "0"}))["context"]
        assert "::x: word" in context and count_tokens(context) <= DEFAULT_BUDGET, i
        events = await api.ok("GET", f"/users/event/{user}", params={"max_token_size": "0"})
        assert events == {"events": []}, i


# --- two API processes over one ClickHouse -------------------------------------------------------


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseFront]:
    front = ClickHouseFront(
        tmp_path_factory.mktemp("ryw-front") / "clickhouse", free_port(), user="memstream", password="ryw-secret"
    )
    front.start()
    yield front
    front.stop()


@pytest.fixture(scope="module")
async def two_apis(
    front: ClickHouseFront, make_settings: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Api, Api]]:
    """A worker and an API in this process, a second ``memstream api`` as a child process."""
    settings = make_settings(
        clickhouse_url=front.url,
        clickhouse_database="memstream_ryw",
        api_instance="here",
        read_your_writes_timeout=READABLE_WITHIN,
    )
    store = await open_store(front.url, "memstream_ryw")
    stack = Stack(settings, store)
    await stack.start()
    other = MemstreamProcess(
        "api",
        1,
        settings.model_copy(update={"port": free_port(), "api_instance": "there"}),
        Path(tmp_path_factory.mktemp("ryw-logs")),
    )
    other.start()
    here, there = Api(stack.url, TOKEN), Api(f"http://{other.settings.host}:{other.settings.port}", TOKEN)
    try:
        other.wait_listening()
        yield here, there
    finally:
        await here.close()
        await there.close()
        other.stop()
        await stack.stop()
        await store.close()


async def test_a_write_through_one_api_is_read_through_the_other(two_apis: tuple[Api, Api]) -> None:
    here, there = two_apis
    for i in range(ROUNDS):
        writer, reader = (here, there) if i % 2 else (there, here)
        user = (await writer.ok("POST", "/users", json={"data": {"round": i}}))["id"]
        assert (await reader.ok("GET", f"/users/{user}"))["data"] == {"round": i}, i
        blob_id = (await writer.ok("POST", f"/blobs/insert/{user}", json=go_chat(f"two doors {i}")))["id"]
        assert (await reader.ok("GET", f"/blobs/{user}/{blob_id}"))["blob_data"]["messages"][0][
            "content"
        ] == f"two doors {i}"
        slot_id = (
            await writer.ok(
                "POST",
                f"/users/profile/{user}",
                json={"content": f"door {i}", "attributes": {"topic": "t", "sub_topic": "s"}},
            )
        )["id"]
        assert [r["id"] for r in (await reader.ok("GET", f"/users/profile/{user}"))["profiles"]] == [slot_id], i
        await writer.ok("DELETE", f"/users/{user}")
        assert (await errno_of(reader, "GET", f"/users/{user}"))[0] == 404, i


async def cache_hits(api: Api) -> float:
    """The read-cache hits an API process has counted (its ``/metrics``, root token)."""
    async with api.session.get(
        api.base.removesuffix("/api/v1") + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("memstream_read_cache_hits_total")
    )


async def test_a_cached_read_is_never_stale_after_a_write_through_either_api(two_apis: tuple[Api, Api]) -> None:
    """Both processes hold the user's profile and context in their read caches (read twice first);
    each write through one is in the very next read through the other."""
    here, there = two_apis
    hits_before = [await cache_hits(here), await cache_hits(there)]

    async def warm(user: str) -> None:
        for api in (here, there):
            for _ in range(2):
                await api.ok("GET", f"/users/profile/{user}")
                await api.ok("GET", f"/users/context/{user}")

    for i in range(ROUNDS):
        writer, reader = (here, there) if i % 2 else (there, here)
        user = (await writer.ok("POST", "/users", json={"data": {}}))["id"]
        await warm(user)
        slot = {"content": f"cached {i}", "attributes": {"topic": "t", "sub_topic": "s"}}
        slot_id = (await writer.ok("POST", f"/users/profile/{user}", json=slot))["id"]
        assert [p["content"] for p in (await reader.ok("GET", f"/users/profile/{user}"))["profiles"]] == [f"cached {i}"]
        assert f"cached {i}" in (await reader.ok("GET", f"/users/context/{user}"))["context"]
        await warm(user)
        await writer.ok("PUT", f"/users/profile/{user}/{slot_id}", json={**slot, "content": f"recached {i}"})
        profiles = (await reader.ok("GET", f"/users/profile/{user}"))["profiles"]
        assert [p["content"] for p in profiles] == [f"recached {i}"], i
        await warm(user)
        await writer.ok("POST", f"/blobs/insert/{user}", json=go_chat(f"working line {i}"))
        assert f"working line {i}" in (await reader.ok("GET", f"/users/context/{user}"))["context"], i
        await warm(user)
        await writer.ok("DELETE", f"/users/profile/{user}/{slot_id}")
        assert (await reader.ok("GET", f"/users/profile/{user}"))["profiles"] == [], i
        assert f"recached {i}" not in (await reader.ok("GET", f"/users/context/{user}"))["context"], i
        await warm(user)
        await writer.ok("DELETE", f"/users/{user}")
        assert (await reader.ok("GET", f"/users/profile/{user}"))["profiles"] == [], i
        assert f"working line {i}" not in (await reader.ok("GET", f"/users/context/{user}"))["context"], i
    # the warm reads were answered from the copies, so the reads after each write could have been stale
    assert await cache_hits(here) > hits_before[0] and await cache_hits(there) > hits_before[1]
