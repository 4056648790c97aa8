"""The event timeline over the real stack with an embedder: reading, editing, deleting, tag and
semantic search (the scripted server embeds texts as bag-of-words vectors, so shared words score)."""

import asyncio
import math
import uuid
from datetime import timedelta
from typing import Any

import pytest
from memobase import MemoBaseClient

from memstream.stack import Stack
from projections.events import event_text
from projections.rows import ops_for
from projections.store import Store
from projections.writer import apply_ops
from scripts.scripted_llm import ScriptedLLM, embed
from streams.records import EventData, EventRecorded, ProjectConfigSet, utc_now
from streams.tokens import count_tokens
from tests.support.client import Api, new_user
from tests.support.memory import events, record_event, search, tips
from tests.support.records import publish
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(
    lambda llm: {"llm_base_url": llm.base_url, "embedding_base_url": llm.base_url}
)


@pytest.fixture(scope="module")
async def tagged(stack: Stack) -> None:
    """The project declares the tags the tests use (the extract agent drops undeclared ones)."""
    config = "event_tags:\n  - name: emotion\n  - name: topic\n"
    await publish(
        stack.settings, stack.settings.topic_projects, ProjectConfigSet(project_id="default", config_yaml=config)
    )


async def test_get_events_topk_time_range_summary_and_token_budget(api: Api, llm: ScriptedLLM, store: Store) -> None:
    user = new_user()
    old = EventRecorded(
        project_id="default",
        user_id=user,
        seq=1,
        event_id=str(uuid.uuid4()),
        flush_id="old",
        event_data=EventData(event_tip="an old memory"),
        created_at=utc_now() - timedelta(days=30),
    )
    await apply_ops(store, ops_for(old))
    await record_event(api, llm, user, "", changes=[{"topic": "interest", "sub_topic": "music", "content": "jazz"}])
    await record_event(api, llm, user, "Dana started learning the cello")
    await record_event(api, llm, user, "Dana moved to Lisbon for work")

    newest = await events(api, user, topk=2)
    assert tips(newest) == ["Dana moved to Lisbon for work", "Dana started learning the cello"]
    assert len(await events(api, user)) == 4
    assert "an old memory" not in tips(await events(api, user, time_range_in_days=7))
    assert len(await events(api, user, time_range_in_days=31)) == 4
    assert None not in tips(await events(api, user, need_summary="true"))
    assert len(await events(api, user, need_summary="true")) == 3

    sizes = [count_tokens(event_text(e["event_data"])) for e in await events(api, user)]
    assert len(await events(api, user, max_token_size=sizes[0] + sizes[1])) == 2
    assert len(await events(api, user, max_token_size=sizes[0] + sizes[1] - 1)) == 1
    assert await events(api, user, max_token_size=sizes[0] - 1) == []


async def test_edit_merges_and_reembeds(api: Api, llm: ScriptedLLM, tagged: None) -> None:
    user = new_user()
    event_id = await record_event(
        api,
        llm,
        user,
        "Erin bought a red bicycle",
        tags={"emotion": "happy"},
        changes=[{"topic": "interest", "sub_topic": "sport", "content": "cycling"}],
    )
    assert tips((await search(api, user, query="red bicycle"))["events"]) == ["Erin bought a red bicycle"]

    assert await api.ok("PUT", f"/users/event/{user}/{event_id}", json={"event_tip": "Erin adopted a grey kitten"}) == {
        "id": event_id
    }
    [edited] = await events(api, user)  # read-your-writes: the PUT returned once the row changed
    assert edited["event_data"]["event_tip"] == "Erin adopted a grey kitten"
    assert edited["event_data"]["event_tags"] == [{"tag": "emotion", "value": "happy"}]
    assert edited["event_data"]["profile_delta"][0]["content"] == "cycling"

    found = await search(api, user, query="grey kitten")
    assert found["search"] == "semantic" and [e["id"] for e in found["events"]] == [event_id]
    assert (await search(api, user, query="red bicycle"))["events"] == []
    gists = (await search(api, user, kind="event_gist", query="red bicycle"))["gists"]
    assert gists == []  # the old tip's gist was retired with the rewrite
    gists = (await search(api, user, kind="event_gist", query="grey kitten"))["gists"]
    assert [g["gist_data"]["content"] for g in gists][:1] == ["Erin adopted a grey kitten"]

    await api.ok("PUT", f"/users/event/{user}/{event_id}", json={"event_tags": [{"tag": "emotion", "value": "calm"}]})
    [edited] = await events(api, user)
    assert edited["event_data"]["event_tip"] == "Erin adopted a grey kitten"
    assert edited["event_data"]["event_tags"] == [{"tag": "emotion", "value": "calm"}]

    # What the SDK allows: a whole event dumped back (its other keys ignored), attributes with a null
    # or a number, and profile_delta null (which clears it, as any field set to null does).
    dumped = {
        **edited,
        "event_data": None,
        "event_tip": "Erin named the kitten Pip",
        "profile_delta": [{"content": "cats", "attributes": {"topic": "interest", "sub_topic": None, "n": 2}}],
    }
    await api.ok("PUT", f"/users/event/{user}/{event_id}", json=dumped)
    [edited] = await events(api, user)
    assert edited["event_data"]["event_tip"] == "Erin named the kitten Pip"
    assert edited["event_data"]["profile_delta"] == [{"content": "cats", "attributes": {"topic": "interest", "n": "2"}}]
    await api.ok("PUT", f"/users/event/{user}/{event_id}", json={"profile_delta": None})
    [edited] = await events(api, user)
    assert (
        edited["event_data"]["profile_delta"] == [] and edited["event_data"]["event_tip"] == "Erin named the kitten Pip"
    )


async def test_delete_removes_event_and_gists(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    kept = await record_event(api, llm, user, "Finn planted tomatoes")
    gone = await record_event(api, llm, user, "Finn sailed to Norway")
    assert (await search(api, user, kind="event_gist", query="sailed Norway"))["gists"]

    assert await api.ok("DELETE", f"/users/event/{user}/{gone}") is None
    assert [e["id"] for e in await events(api, user)] == [kept]
    assert (await search(api, user, query="sailed Norway"))["events"] == []
    assert (await search(api, user, kind="event_gist", query="sailed Norway"))["gists"] == []
    status, body = await api.call("DELETE", f"/users/event/{user}/{gone}")
    assert status == 200 and body["errno"] == 404


async def test_tag_search_needs_every_tag_and_exact_values(api: Api, llm: ScriptedLLM, tagged: None) -> None:
    user = new_user()
    both = await record_event(api, llm, user, "review went well", tags={"emotion": "happy", "topic": "work"})
    one = await record_event(api, llm, user, "sunny picnic", tags={"emotion": "happy"})
    sad = await record_event(api, llm, user, "missed the deadline", tags={"emotion": "sad", "topic": "work"})

    async def by_tags(**query: str) -> list[str]:
        found = await api.ok("GET", f"/users/event_tags/search/{user}", params=query)
        return [e["id"] for e in found["events"]]

    assert await by_tags(tags="emotion,topic") == [sad, both]
    assert await by_tags(tag_values="emotion=happy") == [one, both]
    assert await by_tags(tags="topic", tag_values="emotion=happy") == [both]
    assert await by_tags(tag_values="emotion=happy,topic=work") == [both]
    assert await by_tags(tag_values="emotion=hap") == []
    assert await by_tags(tags="emotion", topk="1") == [sad]


async def test_semantic_search_ranks_and_honours_threshold(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    jazz = "Gil plays jazz piano every evening"
    await record_event(api, llm, user, "Gil went hiking in the Alps")
    await record_event(api, llm, user, jazz)
    await record_event(api, llm, user, "Gil cooked pasta for friends")

    found = await search(api, user, query="jazz piano", similarity_threshold=0)
    assert found["search"] == "semantic" and tips(found["events"])[0] == jazz
    expected = sum(a * b for a, b in zip(embed("jazz piano"), embed(jazz)))
    assert math.isclose(found["events"][0]["similarity"], expected, rel_tol=1e-5)
    assert tips((await search(api, user, query="jazz piano", similarity_threshold=expected - 0.01))["events"]) == [jazz]
    assert (await search(api, user, query="jazz piano", similarity_threshold=expected + 0.01))["events"] == []

    gists = await search(api, user, kind="event_gist", query="hiking Alps")
    assert gists["search"] == "semantic"
    assert gists["gists"][0]["gist_data"] == {"content": "Gil went hiking in the Alps"}
    assert set(gists["gists"][0]) >= {"id", "created_at", "updated_at", "similarity"}


def sdk_calls(url: str, user_id: str, event_id: str) -> dict[str, Any]:
    """Memobase's SDK, unchanged, on every event call (it validates what it parses)."""
    user = MemoBaseClient(project_url=url, api_key=TOKEN).get_user(user_id, no_get=True)
    got: dict[str, Any] = {"events": user.event(topk=5, max_token_size=500, need_summary=True)}
    user.update_event(event_id, {"event_tip": "Jo sings opera in Vienna"})
    got["search"] = user.search_event("opera Vienna")
    got["gists"] = user.search_event_gist("opera")
    got["by_tags"] = user.search_event_by_tags(tags=["emotion"], tag_values={"topic": "music"})
    user.delete_event(event_id)
    got["after_delete"] = user.event()
    return got


async def test_memobase_sdk_event_calls(api: Api, llm: ScriptedLLM, stack: Stack, tagged: None) -> None:
    user = new_user()
    event_id = await record_event(api, llm, user, "Jo sings in a choir", tags={"emotion": "joy", "topic": "music"})
    got = await asyncio.to_thread(sdk_calls, stack.url, user, event_id)
    assert [str(e.id) for e in got["events"]] == [event_id]
    assert [str(e.id) for e in got["search"]] == [event_id] and got["search"][0].similarity > 0.5
    assert got["gists"][0].gist_data.content == "Jo sings opera in Vienna"
    assert [e.event_data.event_tip for e in got["by_tags"]] == ["Jo sings opera in Vienna"]
    assert got["after_delete"] == []


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/users/event/not-a-uuid", "user_id"),
        ("GET", "/users/event/{user}?topk=0", "topk"),
        ("GET", "/users/event/{user}?topk=ten", "topk"),
        ("GET", "/users/event/{user}?max_token_size=-5", "max_token_size"),
        ("GET", "/users/event/{user}?time_range_in_days=x", "time_range_in_days"),
        ("GET", "/users/event/{user}?need_summary=maybe", "need_summary"),
        ("PUT", "/users/event/{user}/not-a-uuid", "event_id"),
        ("DELETE", "/users/event/{user}/42", "event_id"),
        ("GET", "/users/event_tags/search/{user}?tag_values=emotion", "tag_values"),
        ("GET", "/users/event_tags/search/{user}?tag_values=emotion=happy,=work", "tag_values"),
        ("GET", "/users/event_tags/search/{user}?tags=a&topk=-1", "topk"),
        ("GET", "/users/event/search/{user}", "query"),
        ("GET", "/users/event/search/{user}?query=x&similarity_threshold=2", "similarity_threshold"),
        ("GET", "/users/event_gist/search/{user}?query=x&time_range_in_days=0", "time_range_in_days"),
        ("GET", "/users/event_gist/search/not-a-uuid?query=x", "user_id"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(api: Api, method: str, path: str, field: str) -> None:
    status, body = await api.call(method, path.format(user=new_user()), json={"event_tip": "x"})
    assert status == 422 and body["errno"] == 422 and body["errmsg"].startswith(field), body


async def test_bad_edit_bodies_and_unknown_events(api: Api) -> None:
    user, event_id = new_user(), str(uuid.uuid4())
    for payload, field in [
        ({"event_tip": 5}, "event_tip"),
        ({"event_tags": "happy"}, "event_tags"),
        ({"profile_delta": [{"attributes": {"topic": "x"}}]}, "profile_delta"),
    ]:
        status, body = await api.call("PUT", f"/users/event/{user}/{event_id}", json=payload)
        assert status == 422 and field in body["errmsg"], body
    for method in ("PUT", "DELETE"):
        status, body = await api.call(method, f"/users/event/{user}/{event_id}", json={"event_tip": "x"})
        assert status == 200 and body["errno"] == 404 and body["data"] is None, body
