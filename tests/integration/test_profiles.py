"""GET /users/profile parameters, manual edits (POST/PUT/DELETE) and slot history, on the real stack."""

import asyncio
import json

import pytest
from memobase import MemoBaseClient

from memstream.stack import Stack
from scripts.scripted_llm import ScriptedLLM
from streams.tokens import count_tokens
from tests.support.client import Api, new_user
from tests.support.memory import change, flush_with, profiles, rejected, seeded
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url})

SLOTS = [
    change("interest", "music", "jazz and blues"),
    change("interest", "food", "ramen"),
    change("interest", "sport", "tennis on weekends"),
    change("work", "title", "airline pilot"),
    change("work", "company", "Acme Air"),
    change("basic_info", "name", "Alice"),
]


@pytest.fixture(scope="module")
async def user(api: Api, llm: ScriptedLLM) -> str:
    user = new_user()
    await seeded(api, llm, user, SLOTS)
    return user


def topics_of(rows: list[dict]) -> list[str]:
    return [r["attributes"]["topic"] for r in rows]


async def test_profile_wire_format(api: Api, user: str) -> None:
    rows = await profiles(api, user)
    assert len(rows) == len(SLOTS)
    assert set(rows[0]) == {"id", "content", "attributes", "created_at", "updated_at"}
    assert {(r["attributes"]["topic"], r["attributes"]["sub_topic"], r["content"]) for r in rows} == {
        (c["topic"], c["sub_topic"], c["content"]) for c in SLOTS
    }


async def test_only_and_prefer_topics(api: Api, user: str) -> None:
    assert set(topics_of(await profiles(api, user, only_topics="work"))) == {"work"}
    # the Memobase SDK's encoding of lists: repeated keys with a doubled '&'
    status, body = await api.call(
        "GET", f"/users/profile/{user}?max_token_size=1000&prefer_topics=basic_info&&prefer_topics=work"
    )
    assert status == 200, body
    assert topics_of(body["data"]["profiles"]) == ["basic_info", "work", "work", "interest", "interest", "interest"]
    status, body = await api.call("GET", f"/users/profile/{user}?only_topics=work&&only_topics=basic_info")
    assert sorted(topics_of(body["data"]["profiles"])) == ["basic_info", "work", "work"]


async def test_subtopic_limits_topk_and_token_budget(api: Api, user: str) -> None:
    assert sorted(topics_of(await profiles(api, user, max_subtopic_size=1))) == ["basic_info", "interest", "work"]
    limited = await profiles(api, user, max_subtopic_size=1, topic_limits_json=json.dumps({"interest": 3, "work": 0}))
    assert sorted(topics_of(limited)) == ["basic_info", "interest", "interest", "interest"]
    assert len(await profiles(api, user, topk=2)) == 2
    everything = await profiles(api, user)
    first_two = sum(
        count_tokens(f"- {r['attributes']['topic']}::{r['attributes']['sub_topic']}: {r['content']}\n")
        for r in everything[:2]
    )
    assert [r["id"] for r in await profiles(api, user, max_token_size=first_two)] == [r["id"] for r in everything[:2]]


async def test_chats_rank_the_slots_the_conversation_is_about(api: Api, user: str) -> None:
    chats = [{"role": "user", "content": "Any tennis clubs around?"}, {"role": "assistant", "content": "Some."}]
    rows = await profiles(api, user, chats_str=json.dumps(chats), topk=1)
    assert [(r["attributes"]["sub_topic"]) for r in rows] == ["sport"]


@pytest.mark.parametrize(
    "query,field",
    [
        ({"topic_limits_json": "{bad json"}, "topic_limits_json"),
        ({"topic_limits_json": "[1, 2]"}, "topic_limits_json"),
        ({"topic_limits_json": '{"work": -1}'}, "topic_limits_json.work"),
        ({"chats_str": "not json"}, "chats_str"),
        ({"chats_str": '[{"role": "robot", "content": "x"}]'}, "chats_str.0.role"),
        ({"topk": "0"}, "topk"),
        ({"max_subtopic_size": "many"}, "max_subtopic_size"),
        ({"max_token_size": "-5"}, "max_token_size"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(api: Api, query: dict, field: str) -> None:
    message = await rejected(api, f"/users/profile/{new_user()}", query)
    assert message.startswith(f"{field}:"), message


async def test_add_update_move_delete_round_trip(api: Api) -> None:
    user = (await api.ok("POST", "/users", json={}))["id"]
    body = {"content": "loves cats", "attributes": {"topic": "Interest", "sub_topic": "pets"}}
    pid = (await api.ok("POST", f"/users/profile/{user}", json=body))["id"]
    assert [(r["id"], r["attributes"], r["content"]) for r in await profiles(api, user)] == [
        (pid, {"topic": "interest", "sub_topic": "pets"}, "loves cats")
    ]

    again = {"content": "loves cats and dogs", "attributes": {"topic": "interest", "sub_topic": "pets"}}
    assert (await api.ok("POST", f"/users/profile/{user}", json=again))["id"] == pid  # same key: same slot
    assert [(r["id"], r["content"]) for r in await profiles(api, user)] == [(pid, "loves cats and dogs")]

    same = {"content": "has a cat named Miso", "attributes": {"topic": "interest", "sub_topic": "pets"}}
    assert (await api.ok("PUT", f"/users/profile/{user}/{pid}", json=same))["id"] == pid
    assert [(r["id"], r["content"]) for r in await profiles(api, user)] == [(pid, "has a cat named Miso")]

    moved = {"content": "Miso the cat", "attributes": {"topic": "life_event", "sub_topic": "pet"}}
    assert (await api.ok("PUT", f"/users/profile/{user}/{pid}", json=moved))["id"] == pid  # a slot keeps its id
    assert [(r["id"], r["attributes"], r["content"]) for r in await profiles(api, user)] == [
        (pid, {"topic": "life_event", "sub_topic": "pet"}, "Miso the cat")
    ]

    assert await api.ok("DELETE", f"/users/profile/{user}/{pid}") is None
    assert await profiles(api, user) == []


async def test_unknown_users_and_slots_are_errno_404(api: Api) -> None:
    user, missing = new_user(), new_user()
    body = {"content": "x", "attributes": {"topic": "a", "sub_topic": "b"}}
    for method, path, kwargs in [
        ("POST", f"/users/profile/{user}", {"json": body}),
        ("PUT", f"/users/profile/{user}/{missing}", {"json": body}),
        ("DELETE", f"/users/profile/{user}/{missing}", {}),
        ("GET", f"/users/profile/{user}/{missing}/history", {}),
    ]:
        status, answer = await api.call(method, path, **kwargs)
        assert (status, answer["errno"], answer["data"]) == (200, 404, None), (method, answer)


@pytest.mark.parametrize(
    "body,field",
    [
        ({"content": "x"}, "body.attributes"),
        ({"content": " ", "attributes": {"topic": "a", "sub_topic": "b"}}, "body.content"),
        ({"content": "x", "attributes": {"topic": "a"}}, "body.attributes.sub_topic"),
    ],
)
async def test_bad_edit_bodies_are_422(api: Api, body: dict, field: str) -> None:
    user = new_user()
    status, answer = await api.call("POST", f"/users/profile/{user}", json=body)
    assert (status, answer["errno"]) == (422, 422) and field in answer["errmsg"]
    assert await profiles(api, user) == []


async def test_history_lists_flush_then_manual_changes_with_their_sources(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    first_flush = await flush_with(api, llm, user, [change("work", "title", "pilot")], "became a pilot")
    [slot] = await profiles(api, user)
    pid = slot["id"]
    await api.ok(
        "PUT",
        f"/users/profile/{user}/{pid}",
        json={"content": "senior pilot", "attributes": {"topic": "work", "sub_topic": "title"}},
    )
    second_flush = await flush_with(api, llm, user, [change("work", "title", "captain", op="update")], "promoted")
    moved = {"content": "captain at Acme", "attributes": {"topic": "career", "sub_topic": "role"}}
    assert (await api.ok("PUT", f"/users/profile/{user}/{pid}", json=moved))["id"] == pid
    await api.ok("DELETE", f"/users/profile/{user}/{pid}")

    history = (await api.ok("GET", f"/users/profile/{user}/{pid}/history"))["history"]
    assert [(h["op"], h["topic"], h["content"], h["source"]) for h in history] == [
        ("add", "work", "pilot", "flush"),
        ("update", "work", "senior pilot", "manual"),
        ("update", "work", "captain", "flush"),
        ("update", "career", "captain at Acme", "manual"),
        ("delete", "career", "", "manual"),
    ]
    assert [history[0]["source_id"], history[2]["source_id"]] == [first_flush, second_flush]
    assert history[1]["source_id"] and history[1]["source_id"] not in (first_flush, second_flush)
    assert all(h["profile_id"] == pid for h in history)  # a moved slot keeps its id and its story
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)


async def test_memobase_sdk_profile_calls(api: Api, user: str, stack: Stack) -> None:
    def session() -> tuple:
        sdk_user = MemoBaseClient(project_url=stack.url, api_key=TOKEN).get_user(user, no_get=True)
        preferred = sdk_user.profile(prefer_topics=["work", "basic_info"], max_subtopic_size=1)
        limited = sdk_user.profile(topic_limits={"interest": 1}, only_topics=["interest", "work"])
        chats = sdk_user.profile(chats=[{"role": "user", "content": "I want ramen tonight"}], max_token_size=15)
        added = sdk_user.add_profile("Bob", "basic_info", "nickname")
        return preferred, limited, chats, added

    preferred, limited, chats, added = await asyncio.to_thread(session)
    assert [p.topic for p in preferred] == ["work", "basic_info", "interest"]
    assert sorted(p.topic for p in limited) == ["interest", "work", "work"]
    assert chats[0].sub_topic == "food"
    assert added in {r["id"] for r in await profiles(api, user)}
    await api.ok("DELETE", f"/users/profile/{user}/{added}")
