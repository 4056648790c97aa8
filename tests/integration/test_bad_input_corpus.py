"""A corpus of bad input against every Memobase operation of the served OpenAPI document.

Every probe's answer must be the envelope as JSON (no 5xx, no stack trace, no Python exception
name), and a probe that does not parse must be a 422 naming the field (413 for a body over
``max_body_bytes``) with nothing written: the ingest and projects topics do not grow (the API
answers a write only once the broker has it, so a write would show there first), and the
probe's user (fresh, unless said) has no more rows in users, blobs, profiles or events.

Text that does parse is content, however it looks: SQL-looking strings, NUL, quotes and
backslashes, emoji, nesting below the parser's limit. The round-trip tests store such text
through every write endpoint and read it back identical, which also shows that every query
takes its values as parameters, never spliced into SQL.

Unknown query parameters are ignored (Memobase's server ignores them and its SDKs rely on
it): a request answers the same with and without them.
"""

import gzip
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from memstream.stack import Stack
from projections.store import Store
from tests.support.client import Api, chat, eventually, new_user
from tests.support.probes import Corpus, envelope_problems, readable, send

MAX_BODY = 8192
pytestmark = pytest.mark.stack_settings.with_args({"max_body_bytes": MAX_BODY, "wait_timeout": 5.0})

SQL = ["'; DROP TABLE users; --", "\\' OR 1=1", '" OR ""="', "1; SELECT * FROM system.tables", "x\x00y", "😀 é ß"]
BAD_UUIDS = ["not-a-uuid", "42", quote(SQL[0]), quote(SQL[1]), "%FF%FE", "%00", "1b4e28ba-2d1f-4c2a-9a1e-1f2b3c4d5e6"]
BAD_BLOB_TYPES = ["video", quote(SQL[0]), "CHAT"]
BAD_QUERY_VALUES = {
    "integer": ["ten", "1.5e3", "-1", "99999999999999999999999", "0x10"],
    "number": ["high", "nan", "inf", "-1", "1e999"],
    "boolean": ["maybe", "2", SQL[0]],
    "enum": [SQL[0], SQL[1]],
    "json": ["{bad", "[" * 1000, '{"a": 1e999}'],  # 1000 deep: past the parser's limit, within the request line's
}
DEEP = b'{"data": ' + b"[" * 3000 + b"]" * 3000 + b"}"  # under MAX_BODY, over the JSON parser's depth limit
BAD_BODIES = {
    "blank": b" \n",  # not empty: an optional body may be left out, not sent as whitespace
    "malformed": b"{not json",
    "truncated": b'{"a": ',
    "array": b"[]",
    "string": b'"text"',
    "number": b"123",
    "null": b"null",
    "invalid UTF-8": b'{"data": {"x": "\xff\xfe"}}',
    "lone surrogate": b'{"data": {"x": "\\ud800"}}',
    "NaN": b'{"data": {"x": NaN}}',
    "overflow": b'{"data": {"x": 1e999}}',
    "deep nesting": DEEP,
}
# A valid body per operation that takes one, so that a probe changes exactly one thing.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "create_user": {"data": {"name": "Ada"}},
    "update_user": {"data": {"name": "Ada"}},
    "insert_blob": chat("hello"),
    "import_profile": {"context": "I like tea"},
    "add_profile": {"content": "tea", "attributes": {"topic": "interest", "sub_topic": "drink"}},
    "update_profile": {"content": "tea", "attributes": {"topic": "interest", "sub_topic": "drink"}},
    "update_event": {"event_tip": "tea"},
    "update_profile_config": {"profile_config": ""},
    "task_status_memos": {"task_id": "some-task"},
}
WRONG_TYPE = {
    "string": ["not", "text"],
    "object": "text",
    "array": "text",
    "integer": "ten",
    "number": "ten",
    "boolean": "maybe",
}


@pytest.fixture(scope="module")
async def spec(api: Api) -> dict[str, Any]:
    async with api.session.get(api.base + "/openapi.json") as response:
        assert response.status == 200
        return await response.json()


@pytest.fixture(scope="module")
async def log_size(stack: Stack) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """Records in the topics the API writes to (ingest and projects), summed over partitions."""
    settings = stack.settings
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    partitions = [
        TopicPartition(topic, p)
        for topic in (settings.topic_ingest, settings.topic_projects)
        for p in range(settings.topic_partitions)
    ]

    async def size() -> int:
        return sum((await consumer.end_offsets(partitions)).values())

    yield size
    await consumer.stop()


def memobase_paths(spec: dict[str, Any]) -> dict[str, Any]:
    """The document's Memobase paths. The MemOS routes (``/api/openmem/v1``) answer MemOS's
    envelope: their bad input is probed in ``test_memos.py``."""
    return {path: item for path, item in spec["paths"].items() if not path.startswith("/api/openmem/")}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in memobase_paths(spec).items() for method, op in item.items()]


def fill(path: str, op: dict[str, Any], user: str, **given: str) -> str:
    """``path`` with its parameters: ``given`` ones, else the probe's user, a fresh UUID, ``chat``."""
    for param in op["parameters"]:
        if param["in"] == "path":
            name = param["name"]
            value = given.get(name) or (
                user if name == "user_id" else "chat" if name == "blob_type" else str(uuid.uuid4())
            )
            path = path.replace("{" + name + "}", value)
    return path


def routed_elsewhere(spec: dict[str, Any], method: str, concrete: str) -> bool:
    """Whether another path of the document takes ``method`` on ``concrete`` (``/blobs/insert/{u}``
    is also ``/blobs/{user_id}/{blob_id}``)."""
    return any(
        re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", path), concrete) and method.lower() in item
        for path, item in spec["paths"].items()
    )


def required_query(op: dict[str, Any], but: str = "") -> str:
    """Valid values for the operation's required query parameters (all free text), except ``but``."""
    return "".join(
        f"&{p['name']}=jazz" for p in op["parameters"] if p["in"] == "query" and p["required"] and p["name"] != but
    )


def valid_body(op: dict[str, Any]) -> bytes:
    """The operation's valid example body (``{}`` for one without a body), so a probe changes one thing only."""
    return json.dumps(VALID_BODIES.get(op["operationId"], {})).encode()


def is_envelope(op: dict[str, Any]) -> bool:
    """Whether the operation answers the envelope (every one but the OpenAPI document itself)."""
    return "anyOf" in op["responses"]["200"]["content"]["application/json"]["schema"]


def query_kind(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "enum"
    if "contentMediaType" in schema:
        return "json"
    return schema.get("type", "string")


@pytest.fixture
def corpus(api: Api, store: Store, log_size: Callable[[], Awaitable[int]]) -> Corpus:
    return Corpus(api, store, log_size)


def test_the_document_covers_every_route(spec: dict[str, Any], stack: Stack) -> None:
    assert spec["openapi"].startswith("3.1") and spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert len(operations(spec)) >= 32
    with_body = {op["operationId"] for _, _, op in operations(spec) if "requestBody" in op}
    assert with_body == set(VALID_BODIES), "every operation with a body needs a valid example in VALID_BODIES"


async def test_bad_path_parameters(spec: dict[str, Any], corpus: Corpus) -> None:
    for method, path, op in operations(spec):
        for param in (p for p in op["parameters"] if p["in"] == "path"):
            name, schema = param["name"], param["schema"]
            bad = BAD_UUIDS if schema.get("format") == "uuid" else BAD_BLOB_TYPES if "enum" in schema else []
            for value in bad:
                user = new_user()
                await corpus.rejected(
                    method,
                    fill(path, op, user, **{name: value}),
                    user,
                    status=422,
                    field=f"{name}:",
                    body=valid_body(op),
                    what=name,
                )
    corpus.check(at_least=150)


async def test_bad_query_values(spec: dict[str, Any], corpus: Corpus) -> None:
    for method, path, op in operations(spec):
        for param in (p for p in op["parameters"] if p["in"] == "query"):
            name = param["name"]
            for value in BAD_QUERY_VALUES.get(query_kind(param["schema"]), []):
                user = new_user()
                query = f"{name}={quote(value)}" + required_query(op, but=name)
                await corpus.rejected(
                    method,
                    fill(path, op, user),
                    user,
                    status=422,
                    field=name,
                    query=query,
                    body=valid_body(op),
                    what=name,
                )
        user = new_user()
        await corpus.rejected(
            method,
            fill(path, op, user),
            user,
            status=422,
            field="query:",
            query="x=%FF%FE&y=%C3",
            what="query string not UTF-8",
        )
    corpus.check(at_least=150)


async def test_sql_looking_query_text_is_just_text(spec: dict[str, Any], corpus: Corpus) -> None:
    """Free-text query parameters take SQL-looking text as text: answered (200, or 422 naming the field
    when it is not a valid value for it, e.g. a template without placeholders), never an error."""
    for method, path, op in operations(spec):
        if method != "GET":
            continue
        for param in (
            p for p in op["parameters"] if p["in"] == "query" and query_kind(p["schema"]) in ("string", "array")
        ):
            for value in SQL:
                query = f"{param['name']}={quote(value)}" + required_query(op, but=param["name"])
                status, body = await corpus.answered(
                    method, fill(path, op, new_user()), query=query, what=param["name"]
                )
                if body is not None and status != 200 and not body["errmsg"].startswith(param["name"]):
                    corpus.record(
                        f"{path} {param['name']}", ["rejected without naming the field"], status, body["errmsg"]
                    )
    corpus.check(at_least=50)


async def test_bad_bodies(spec: dict[str, Any], corpus: Corpus) -> None:
    for method, path, op in operations(spec):
        if "requestBody" not in op:
            continue
        name = op["operationId"]
        probes = [(what, raw, 422, "body") for what, raw in BAD_BODIES.items()]
        probes.append(("too large", b'{"data": {"x": "' + b"a" * MAX_BODY + b'"}}', 413, "body"))
        if op["requestBody"]["required"]:
            probes.append(("empty", b"", 422, "body"))
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        model = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        for field, field_schema in model["properties"].items():
            wrong = {**VALID_BODIES[name], field: WRONG_TYPE[query_kind(field_schema.get("anyOf", [field_schema])[0])]}
            probes.append((f"{field} of the wrong type", json.dumps(wrong).encode(), 422, f"body.{field}"))
        for what, raw, status, field in probes:
            user = new_user()
            await corpus.rejected(
                method, fill(path, op, user), user, status=status, field=field, body=raw, what=f"{name}: {what}"
            )
    corpus.check(at_least=100)


async def test_bad_blob_data(corpus: Corpus) -> None:
    bad = [
        {"blob_type": "video", "blob_data": {"content": "x"}},
        {"blob_type": "chat", "blob_data": {"messages": [{"role": "system", "content": "x"}]}},
        {"blob_type": "chat", "blob_data": {"messages": [{"role": "user", "content": 12}]}},
        {"blob_type": "chat", "blob_data": {"messages": []}},
        {"blob_type": "doc", "blob_data": {"text": "x"}},
        {
            "blob_type": "transcript",
            "blob_data": {"transcripts": [{"content": "x", "start_timestamp_in_seconds": "soon"}]},
        },
        {**chat("x"), "created_at": "yesterday"},
        {**chat("x"), "created_at": "9999-12-31T00:00:00Z"},
        {**chat("x"), "created_at": "0001-01-01T00:00:00Z"},
        {**chat("x"), "fields": ["not", "an", "object"]},
    ]
    for payload in bad:
        user = new_user()
        await corpus.rejected(
            "POST",
            f"/api/v1/blobs/insert/{user}",
            user,
            status=422,
            field="body.",
            body=json.dumps(payload).encode(),
            what=json.dumps(payload)[:60],
        )
    corpus.check(at_least=len(bad))


async def test_slot_names_cannot_hold_the_key_separator(api: Api, corpus: Corpus) -> None:
    """Slots are keyed ``topic::sub_topic``: ("a::b", "c") and ("a", "b::c") would be one slot, so a
    manual edit naming either is a 422 (it used to overwrite the other slot, under an id it did not return)."""
    user = (await api.ok("POST", "/users", json={}))["id"]
    pid = (await api.ok("POST", f"/users/profile/{user}", json=VALID_BODIES["add_profile"]))["id"]
    before = await api.ok("GET", f"/users/profile/{user}")
    for field, attributes in [
        ("topic", {"topic": "a::b", "sub_topic": "c"}),
        ("sub_topic", {"topic": "a", "sub_topic": "b::c"}),
    ]:
        body = json.dumps({"content": "x", "attributes": attributes}).encode()
        for method, path in [("POST", f"/api/v1/users/profile/{user}"), ("PUT", f"/api/v1/users/profile/{user}/{pid}")]:
            await corpus.rejected(
                method, path, user, status=422, field=f"body.attributes.{field}:", body=body, what="'::'"
            )
    assert await api.ok("GET", f"/users/profile/{user}") == before
    corpus.check(at_least=4)


async def test_bad_encodings_and_methods(spec: dict[str, Any], corpus: Corpus) -> None:
    """Compressed bodies count against max_body_bytes once inflated, a body that does not inflate is
    a 4xx, and a method a path does not have is a 405 — all as the envelope."""
    user = new_user()
    path = f"/api/v1/blobs/insert/{user}"
    bomb = gzip.compress(json.dumps({**chat("x" * (MAX_BODY * 50))}).encode())
    assert len(bomb) < MAX_BODY
    await corpus.rejected(
        "POST", path, user, status=413, field="body", body=bomb, headers={"Content-Encoding": "gzip"}, what="gzip bomb"
    )
    # ("br" is not among them: without the Brotli package aiohttp's parser refuses it before the
    # application runs, in plain text — like a request line over its limit, outside the envelope.)
    for encoding in ("gzip", "deflate", "x-unknown"):
        got, content_type, text = await send(
            corpus.api, "POST", path, body=b"not compressed", headers={"Content-Encoding": encoding}
        )
        corpus.record(
            f"POST {path} [Content-Encoding {encoding}]", envelope_problems(got, content_type, text), got, text
        )
    assert await corpus.rows_of(user) == 0
    for path, item in memobase_paths(spec).items():
        concrete = fill(path, item[next(iter(item))], user)
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - {m.upper() for m in item}:
            if not routed_elsewhere(spec, method, concrete):
                await corpus.rejected(
                    method, concrete, user, status=405, field="Method Not Allowed", what="no such method"
                )
    corpus.check(at_least=80)


async def test_unknown_query_parameters_are_ignored(spec: dict[str, Any], corpus: Corpus) -> None:
    """Each operation answers the same with and without parameters it does not know (the body is left
    out, so writes stop at their body check; flushes and deletes of unknown ids are harmless)."""
    unknown = "need_json=true&zzz=" + quote(SQL[0]) + "&page%5B%5D=1"
    for method, path, op in operations(spec):
        filled = fill(path, op, new_user(), task_id="no-such-task")
        if not is_envelope(op):
            assert await send(corpus.api, method, filled) == await send(corpus.api, method, filled, unknown)
            continue
        plain = await corpus.answered(method, filled, query=required_query(op)[1:], what="baseline")
        extra = await corpus.answered(method, filled, query=unknown + required_query(op), what="unknown parameters")
        if plain[1] and extra[1]:
            same = (plain[0], plain[1]["errno"], plain[1]["errmsg"]) == (
                extra[0],
                extra[1]["errno"],
                extra[1]["errmsg"],
            )
            if not same:
                corpus.record(
                    f"{method} {path}", ["answers differently with unknown parameters"], extra[0], str(extra[1])
                )
    corpus.check(at_least=62)


async def test_sql_looking_text_is_stored_verbatim(api: Api) -> None:
    """Users, every blob type, profile slots and imported text keep SQL-looking, NUL and non-ASCII text as sent
    (and a blob's time at either end of what ClickHouse stores)."""
    data = {"name": SQL[0], SQL[1]: SQL[2], "more": SQL[3:], "deep": json.loads("[" * 150 + "]" * 150), "big": 10**30}
    user = (await api.ok("POST", "/users", json={"data": data}))["id"]
    assert (await api.ok("GET", f"/users/{user}"))["data"] == data
    data = {"again": SQL[1], "nul": SQL[4]}
    await api.ok("PUT", f"/users/{user}", json={"data": data})
    assert (await api.ok("GET", f"/users/{user}"))["data"] == data
    found = await api.ok("GET", "/project/users", params={"search": "' OR 1=1", "limit": "1000"})
    assert user in [u["id"] for u in found["users"]]

    blobs = {
        "chat": {
            "messages": [{"role": "user", "content": text, "alias": SQL[0], "created_at": SQL[1]} for text in SQL]
        },
        "doc": {"content": "\n".join(SQL)},
        "summary": {"summary": SQL[2]},
        "code": {"content": SQL[3], "language": SQL[0]},
        "image": {"url": SQL[1], "base64": SQL[4]},
        "transcript": {
            "transcripts": [
                {
                    "content": SQL[0],
                    "start_timestamp_in_seconds": 1.5,
                    "end_time_timestamp_in_seconds": 2.0,
                    "speaker": SQL[5],
                }
            ]
        },
    }
    for blob_type, blob_data in blobs.items():
        fields = {SQL[0]: SQL[1], "n": [SQL[4]]}
        blob_id = (
            await api.ok(
                "POST", f"/blobs/insert/{user}", json={"blob_type": blob_type, "blob_data": blob_data, "fields": fields}
            )
        )["id"]
        got = await readable(api, f"/blobs/{user}/{blob_id}")
        assert (got["blob_type"], got["blob_data"], got["fields"]) == (blob_type, blob_data, fields)

    for at in ("1900-01-01T00:00:00+00:00", "2299-12-31T23:59:59+00:00"):  # ClickHouse's DateTime64 range, both ends
        blob_id = (await api.ok("POST", f"/blobs/insert/{user}", json={**chat(SQL[0]), "created_at": at}))["id"]
        assert (await readable(api, f"/blobs/{user}/{blob_id}"))["created_at"] == at

    imported = await api.ok("POST", f"/users/profile/import/{user}", json={"context": SQL[0] + SQL[4]})
    got = await readable(api, f"/blobs/{user}/{imported['id']}")
    assert got["blob_data"]["messages"][0]["content"] == SQL[0] + SQL[4]

    for text in SQL:
        slot = {"content": text, "attributes": {"topic": "notes " + text, "sub_topic": text}}
        pid = (await api.ok("POST", f"/users/profile/{user}", json=slot))["id"]
        rows = {r["id"]: r for r in (await api.ok("GET", f"/users/profile/{user}"))["profiles"]}
        assert rows[pid]["content"] == text
        assert rows[pid]["attributes"] == {
            "topic": ("notes " + text).strip().lower(),
            "sub_topic": text.strip().lower(),
        }


async def recorded(api: Api, user: str) -> list[dict[str, Any]]:
    return (await api.ok("GET", f"/users/event/{user}"))["events"]


async def test_event_edits_keep_sql_looking_text(api: Api) -> None:
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like jazz and I live in Paris"))
    await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    events = await eventually(lambda: recorded(api, user), what="the flush's event")  # the offline extractor's
    tags = [{"tag": SQL[0], "value": SQL[1]}, {"tag": "mood", "value": SQL[4]}]
    await api.ok(
        "PUT", f"/users/event/{user}/{events[0]['id']}", json={"event_tip": SQL[2] + SQL[3], "event_tags": tags}
    )
    event = (await api.ok("GET", f"/users/event/{user}"))["events"][0]
    assert (event["event_data"]["event_tip"], event["event_data"]["event_tags"]) == (SQL[2] + SQL[3], tags)
    by_tag = await api.ok(
        "GET", f"/users/event_tags/search/{user}", params={"tags": SQL[0], "tag_values": f"mood={SQL[4]}"}
    )
    assert [e["id"] for e in by_tag["events"]] == [event["id"]]
    for text in SQL:
        await api.ok("GET", f"/users/event/search/{user}", params={"query": text})
        await api.ok("GET", f"/users/event_gist/search/{user}", params={"query": text})


async def test_profile_config_keeps_sql_looking_text(api: Api) -> None:
    config = (
        "additional_user_profiles:\n"
        f"  - topic: {json.dumps(SQL[0])}\n"
        f"    description: {json.dumps(SQL[1] + SQL[2])}\n"
        "    sub_topics:\n"
        f"      - name: {json.dumps(SQL[3])}\n"
    )
    await api.ok("POST", "/project/profile_config", json={"profile_config": config})
    assert (await api.ok("GET", "/project/profile_config"))["profile_config"] == config
    status, body = await api.call("POST", "/project/profile_config", json={"profile_config": SQL[0]})
    assert (status, body["errno"], body["data"]) == (200, 400, None) and body["errmsg"].startswith("profile_config")
    assert (await api.ok("GET", "/project/profile_config"))["profile_config"] == config
    await api.ok("POST", "/project/profile_config", json={"profile_config": ""})


async def test_the_tables_are_all_still_there(store: Store) -> None:
    for table in ("users", "blobs", "profiles", "events", "tasks", "buffer"):
        await store.query(f"SELECT count() FROM {store.database}.{table}")
