"""Schemathesis (4.x, Python API) against the OpenAPI document this module's live stack serves.

Every route gets two tests, one per generation mode: Hypothesis draws ``MAX_EXAMPLES`` cases
from the document — values it allows (positive) or forbids (negative) — and each is sent with
the bearer token and must pass:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance`` and ``content_type_conformance``: only documented statuses, as JSON;
- ``response_schema_conformance``: the body is the documented envelope around the documented data;
- ``ignored_auth``: the same request without the token is a 401;
- ``negative_data_rejection`` (negative mode): what the document forbids is a 4xx (413 too, for a
  body the forbidden values make too long).

MemOS's routes (``/api/openmem/v1``) are fuzzed the same way: the document declares their
envelope ``{code, data, message}``, and they take the bearer token as well as ``Token``; the
successful walk reads ``code`` where a route has no ``errno``.

Not used: ``positive_data_acceptance`` — values the document allows can still be domain errors
(errno 404 for an unknown id) or fail a check no schema states (a template without
placeholders, ``tag_values`` without ``=``), all answered HTTP 200 or 422 by design.

Runs are bounded and repeatable: ``derandomize=True``, no example database, no deadline
(``MEMSTREAM_FUZZ_EXAMPLES`` raises the examples per run for a deeper local search). Waiting
calls (``wait_process=true``) could wait as long as ``wait_timeout`` allows (up to an hour by
the document), so a drawn ``wait_timeout`` is capped at ``WAIT_CAP`` seconds and the stack's
default is as short; nothing is skipped for it. The only skips: negative mode where the
document allows any value of every part of the request (no parameters and no body, or only a
free-form ``task_id``), so there is nothing to make invalid.

The stack serves from pytest's event loop and schemathesis's calls block (``requests``), so each
run goes to a thread while the loop keeps serving.
"""

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import ROUTE_MODULES
from memstream.stack import Stack
from tests.support.client import chat
from tests.support.stack import TOKEN

WAIT_CAP = 1.0
pytestmark = [
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
    pytest.mark.stack_settings.with_args({"max_body_bytes": 16384, "wait_timeout": WAIT_CAP}),
]
MAX_EXAMPLES = int(os.environ.get("MEMSTREAM_FUZZ_EXAMPLES", "15"))  # more for a deeper local run
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]
# Every route the application declares; the served document must have each of them, and no other.
# schemathesis's own strategies use `random`, which this Hypothesis version flags on every draw
ROUTES = sorted({(route.method, route.path) for module in ROUTE_MODULES for route in module.routes})


@pytest.fixture(scope="module")
async def schema(stack: Stack) -> schemathesis.BaseSchema:
    return await asyncio.to_thread(schemathesis.openapi.from_url, f"{stack.url}/api/v1/openapi.json")


def _cap_wait(case: schemathesis.Case) -> None:
    raw = (case.query or {}).get("wait_timeout")
    try:
        if raw is not None and float(raw) > WAIT_CAP:
            case.query["wait_timeout"] = WAIT_CAP
    except (TypeError, ValueError):  # a negative case's non-number: sent as drawn
        pass


def negative_data_refused(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``negative_data_rejection``, with 413 as a refusal too: a forbidden value can make a body
    longer than ``max_body_bytes``, which is refused before it is parsed."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


def fuzz(operation: Any, mode: GenerationMode, base_url: str) -> int:
    """Draw cases for ``operation`` and check each answer; raises on the first failing case (shrunk).
    Returns how many requests were sent."""
    checks = CHECKS + ([negative_data_refused] if mode is GenerationMode.NEGATIVE else [])
    sent = 0

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode, headers=AUTH))  # fixed: never mutated away
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        _cap_wait(case)
        sent += 1
        case.call_and_validate(base_url=base_url, checks=checks, timeout=30)

    run()
    return sent


async def test_the_document_is_valid_and_has_every_route(schema: schemathesis.BaseSchema) -> None:
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    served = sorted((method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item)
    assert served == ROUTES


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_operation(
    schema: schemathesis.BaseSchema, stack: Stack, method: str, path: str, mode: GenerationMode
) -> None:
    try:
        sent = await asyncio.to_thread(fuzz, schema[path][method], mode, stack.url)
    except hypothesis.errors.Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("the document allows any value of every part of this request: nothing to make invalid")
    assert sent > 0


def _flow(schema: schemathesis.BaseSchema, base: str) -> set[tuple[str, str]]:
    """Every route once with a successful answer, each validated against the document; returns the routes seen."""
    session = requests.Session()
    session.headers.update(AUTH)
    seen: set[tuple[str, str]] = set()

    def call(
        method: str,
        template: str,
        values: dict[str, str] | None = None,
        ready: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """One call, validated; with ``ready``, repeated (reads lag the log) until it succeeds and ``ready(data)``."""
        deadline = time.monotonic() + 15
        while True:
            response = session.request(method, base + template.format(**(values or {})), timeout=30, **kwargs)
            schema[template][method].validate_response(response)
            body = response.json()
            code = body.get("errno", body.get("code", 0))  # MemOS's routes answer {code, data, message}
            done = code == 0 and (ready is None or ready(body["data"]))
            if done or ready is None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status_code == 200 and done, (method, template, body)
        seen.add((method, template))
        return body.get("data")

    def some(key: str) -> Callable[[Any], Any]:
        return lambda data: data[key]

    u = {"user_id": call("POST", "/api/v1/users", json={"data": {"name": "Ada"}})["id"]}
    call("GET", "/api/v1/users/{user_id}", u)
    call("PUT", "/api/v1/users/{user_id}", u, json={"data": {"name": "Ada L."}})
    call("GET", "/api/v1/healthcheck")
    call("GET", "/api/v1/status")
    call("GET", "/api/v1/openapi.json")
    inserted = call(
        "POST",
        "/api/v1/blobs/insert/{user_id}",
        u,
        json=chat("I like jazz and I live in Paris"),
        params={"wait_process": "true"},
    )
    b = {**u, "blob_id": inserted["id"], "blob_type": "chat", "task_id": inserted["task_id"]}
    call("GET", "/api/v1/blobs/{user_id}/{blob_id}", b, ready=bool)
    call("GET", "/api/v1/users/blobs/{user_id}/{blob_type}", b, ready=some("ids"))
    call("GET", "/api/v1/users/buffer/capacity/{user_id}/{blob_type}", b, ready=some("ids"))
    call("POST", "/api/v1/users/buffer/{user_id}/{blob_type}", b, params={"wait_process": "true", "wait_timeout": "20"})
    call("GET", "/api/v1/tasks/{task_id}", b)
    call("GET", "/api/v1/users/tasks/{user_id}", u, ready=some("tasks"))
    call("GET", "/api/v1/users/buffer/{user_id}/{blob_type}", b)
    call("GET", "/api/v1/users/flush/{user_id}/{flush_id}", {**u, "flush_id": b["task_id"]})
    call("POST", "/api/v1/get/status", json={"task_id": b["task_id"]})
    slot = {"content": "tea", "attributes": {"topic": "interest", "sub_topic": "drink"}}
    p = {**u, "profile_id": call("POST", "/api/v1/users/profile/{user_id}", u, json=slot)["id"]}
    call(
        "GET",
        "/api/v1/users/profile/{user_id}",
        u,
        params={"chats_str": '[{"role": "user", "content": "tea?"}]'},
        ready=some("profiles"),
    )
    call("PUT", "/api/v1/users/profile/{user_id}/{profile_id}", p, json={**slot, "content": "green tea"})
    call("GET", "/api/v1/users/profile/{user_id}/{profile_id}/history", p)
    call("DELETE", "/api/v1/users/profile/{user_id}/{profile_id}", p)
    e = {**u, "event_id": call("GET", "/api/v1/users/event/{user_id}", u, ready=some("events"))["events"][0]["id"]}
    call("PUT", "/api/v1/users/event/{user_id}/{event_id}", e, json={"event_tags": [{"tag": "mood", "value": "good"}]})
    call("GET", "/api/v1/users/event_tags/search/{user_id}", u, params={"tags": "mood"}, ready=some("events"))
    call("GET", "/api/v1/users/event/search/{user_id}", u, params={"query": "jazz"}, ready=some("events"))
    call("GET", "/api/v1/users/event_gist/search/{user_id}", u, params={"query": "jazz"}, ready=some("gists"))
    call("GET", "/api/v1/users/event_gist/{user_id}", u, ready=some("gists"))
    call("GET", "/api/v1/users/context/{user_id}", u)
    call("GET", "/api/v1/users/context/{user_id}/tokens", u)
    call(
        "POST",
        "/api/v1/users/profile/import/{user_id}",
        u,
        json={"context": "I work as a pilot"},
        params={"wait_process": "true", "wait_timeout": "20"},
    )
    call("GET", "/api/v1/project/profile_config")
    call("POST", "/api/v1/project/profile_config", json={"profile_config": "language: en\n"})
    call("GET", "/api/v1/project/users", params={"search": "Ada"}, ready=some("users"))
    call("GET", "/api/v1/project/usage")
    call("GET", "/api/v1/project/billing")
    memos = "/api/openmem/v1"
    m = {"user_id": u["user_id"], "conversation_id": "c1", "messages": [{"role": "user", "content": "I sail"}]}
    added = call("POST", f"{memos}/add/message", json=m)
    call("POST", f"{memos}/get/status", json={"task_id": added["task_id"]})
    call(
        "POST",
        f"{memos}/search/memory",
        json={"user_id": u["user_id"], "query": "sail"},
        ready=some("memory_detail_list"),
    )
    page = call("POST", f"{memos}/get/memory", json={"user_id": u["user_id"]}, ready=some("memory_detail_list"))
    call("POST", f"{memos}/delete/memory", json={"memory_ids": [page["memory_detail_list"][0]["id"]]})
    call("DELETE", "/api/v1/users/event/{user_id}/{event_id}", e)
    call("DELETE", "/api/v1/blobs/{user_id}/{blob_id}", b)
    call("DELETE", "/api/v1/users/{user_id}", u)
    return seen


async def test_successful_answers_match_the_document(schema: schemathesis.BaseSchema, stack: Stack) -> None:
    """Fuzzing mostly meets unknown ids; this walks every route with real data, so each documented
    ``data`` shape is checked against a real success (the flush and import wait for their extraction)."""
    seen = await asyncio.to_thread(_flow, schema, stack.url)
    assert sorted(seen) == ROUTES
