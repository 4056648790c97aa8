"""``GET /metrics``: the API's behind the root token, the worker's on its own port; the counters
move by what a request, an insert, a flush (one scripted LLM call) and a read did."""

import json
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memstream.projects_admin import create_project
from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user
from tests.support.memory import change, flush_with, profiles
from tests.support.stack import TOKEN

pytestmark = [pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url})]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
INSERT = "/api/v1/blobs/insert/{user_id}"
FLUSH = "/api/v1/users/buffer/{user_id}/{blob_type}"
PROFILE = "/api/v1/users/profile/{user_id}"


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def fetch(url: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def scrape(stack: Stack) -> Samples:
    status, content_type, text = await fetch(f"{stack.url}/metrics", TOKEN)
    assert status == 200 and content_type.startswith("text/plain"), (status, text)
    return parse(text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: str = "200") -> float:
    return value(samples, "memstream_http_requests_total", method=method, route=route, status=status)


async def test_the_counters_move_by_what_was_done(stack: Stack, api: Api, llm: ScriptedLLM) -> None:
    model = stack.settings.llm_model
    before = await scrape(stack)
    user = new_user()
    await flush_with(api, llm, user, [change("basic_info", "name", "Alice")], "Alice said hi", said="I am Alice")
    assert [p["content"] for p in await profiles(api, user)] == ["Alice"]

    async def tasks_counted() -> Samples | None:
        samples = await scrape(stack)
        done = value(samples, "memstream_tasks_finished_total", status="completed")
        return samples if done > value(before, "memstream_tasks_finished_total", status="completed") else None

    after = await eventually(tasks_counted, what="the flush's task counted")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert requests(after, "POST", INSERT) - requests(before, "POST", INSERT) == 1
    assert requests(after, "POST", FLUSH) - requests(before, "POST", FLUSH) == 1
    assert requests(after, "GET", PROFILE) - requests(before, "GET", PROFILE) == 1
    assert requests(after, "GET", "/metrics") - requests(before, "GET", "/metrics") >= 1  # the scrapes before
    assert not any(  # routes are canonical paths, never the raw URL
        user in dict(labels).get("route", "") for name, labels in after if name == "memstream_http_requests_total"
    )
    assert moved("memstream_tasks_finished_total", status="completed") == 2  # the insert's and the flush's tasks
    assert moved("memstream_tasks_finished_total", status="failed") == 0
    assert moved("memstream_llm_calls_total", model=model, outcome="ok") == 1
    assert moved("memstream_llm_tokens_total", model=model, kind="input") == 10  # the scripted usage
    assert moved("memstream_llm_tokens_total", model=model, kind="output") == 5
    assert moved("memstream_llm_call_seconds_count", model=model) == 1
    assert moved("memstream_insert_seconds_count", route=INSERT) == 1
    assert moved("memstream_read_seconds_count", route=PROFILE) == 1
    assert moved("memstream_read_seconds_count", route="/metrics") == 0  # scrapes are not reads
    assert value(after, "memstream_extraction_slots") == stack.settings.extract_concurrency
    assert value(after, "memstream_extraction_slots_in_use") == 0
    groups = {dict(labels)["group"] for name, labels in after if name == "memstream_consumer_lag"}
    assert groups == {stack.settings.app_id, stack.settings.projection_group}
    assert ("memstream_projection_lag", frozenset()) in after


async def test_buffers_open_counts_windows_not_flushed(stack: Stack, api: Api) -> None:
    def open_buffers(samples: Samples) -> float:
        return sum(v for (name, _), v in samples.items() if name == "memstream_buffers_open")

    before = open_buffers(await scrape(stack))
    await api.ok("POST", f"/blobs/insert/{new_user()}", json=chat("nothing to flush yet"))

    async def counted() -> bool:
        return open_buffers(await scrape(stack)) == before + 1

    await eventually(counted, what="one more open buffer")


async def test_only_the_root_token_may_scrape(stack: Stack) -> None:
    project_token = await create_project(stack.settings, f"metrics_{new_user()[:8]}")
    for token in (None, project_token, "not-a-token"):
        status, content_type, text = await fetch(f"{stack.url}/metrics", token)
        body = json.loads(text)
        assert (status, content_type.split(";")[0]) == (401, "application/json"), (token, text)
        assert body["data"] is None and body["errno"] == 401 and body["errmsg"], body
    assert stack.metrics_url is None  # with the API in the process, its /metrics covers the worker too


async def test_a_worker_serves_metrics_on_its_own_port(make_settings: Callable[..., Settings], store: Store) -> None:
    settings = make_settings(metrics_port=0)
    worker = Stack(settings, store, api=False)
    await worker.start()
    try:
        url = worker.metrics_url
        assert url is not None and not url.startswith(f"http://{settings.host}:{settings.port}/")
        status, content_type, text = await fetch(url)  # no token: the port is the operator's to expose
        assert status == 200 and content_type.startswith("text/plain"), text
        samples = parse(text)
        assert value(samples, "memstream_extraction_slots") == settings.extract_concurrency
        assert {dict(labels)["partition"] for name, labels in samples if name == "memstream_buffers_open"} == {
            "0",
            "1",
        }
        assert any(
            name == "memstream_consumer_lag" and ("group", settings.app_id) in labels for name, labels in samples
        )
        assert not any(name == "memstream_http_requests_total" for name, _ in samples)  # no API here
    finally:
        await worker.stop()
