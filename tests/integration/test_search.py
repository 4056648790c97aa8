"""Search without an embedder (lexical, over the real stack) and the search read model itself
(rows written straight into ClickHouse, for the cases a flush cannot produce)."""

import uuid
from datetime import timedelta

import pytest

from projections.rows import ops_for
from projections.search import Criteria, search_events, search_gists
from projections.store import Store
from projections.writer import apply_ops
from scripts.scripted_llm import ScriptedLLM
from streams.records import EventData, EventDropped, EventGist, EventRecorded, ProfileDelta, utc_now
from tests.support.client import Api, new_user
from tests.support.memory import record_event, search, tips

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url})  # (no embedding endpoint)


async def test_lexical_search_finds_events_by_their_words(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    jazz = await record_event(api, llm, user, "Hana plays Jazz piano on Fridays")
    await record_event(
        api,
        llm,
        user,
        "Hana visited Kyoto",
        changes=[{"topic": "interest", "sub_topic": "food", "content": "ramen and matcha"}],
    )

    found = await search(api, user, query="jazz")
    assert found["search"] == "lexical"
    assert [(e["id"], e["similarity"]) for e in found["events"]] == [(jazz, 1.0)]
    assert tips((await search(api, user, query="MATCHA"))["events"]) == ["Hana visited Kyoto"]  # profile changes count
    assert [e["similarity"] for e in (await search(api, user, query="piano violin"))["events"]] == [0.5]
    assert (await search(api, user, query="piano violin", similarity_threshold=0.6))["events"] == []
    assert tips((await search(api, user, query="hana", topk=1))["events"]) == ["Hana visited Kyoto"]  # tie: newest
    assert (await search(api, user, query="trumpet"))["events"] == []

    gists = await search(api, user, kind="event_gist", query="Kyoto")
    assert gists["search"] == "lexical" and [g["gist_data"]["content"] for g in gists["gists"]] == [
        "Hana visited Kyoto"
    ]


async def test_lexical_search_follows_edits(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    event_id = await record_event(api, llm, user, "Ivo repaired an old radio")
    await api.ok("PUT", f"/users/event/{user}/{event_id}", json={"event_tip": "Ivo built a wooden boat"})
    assert [e["id"] for e in (await search(api, user, query="wooden boat"))["events"]] == [event_id]
    assert (await search(api, user, query="radio"))["events"] == []
    assert (await search(api, user, kind="event_gist", query="radio"))["gists"] == []


def _recorded(
    user: str, tip: str, embedding: list[float] | None = None, days_ago: int = 0, gist: str | None = None
) -> EventRecorded:
    event_id = str(uuid.uuid4())
    return EventRecorded(
        project_id="p",
        user_id=user,
        seq=1,
        event_id=event_id,
        flush_id=event_id,
        event_data=EventData(event_tip=tip, profile_delta=[ProfileDelta(content="x", attributes={})]),
        embedding=embedding,
        created_at=utc_now() - timedelta(days=days_ago),
        gists=[EventGist(gist_id=str(uuid.uuid4()), content=gist, embedding=embedding)] if gist else [],
    )


async def _write(store: Store, *records: EventRecorded | EventDropped) -> None:
    for record in records:
        await apply_ops(store, ops_for(record))


async def test_semantic_search_skips_rows_it_cannot_compare(store: Store) -> None:
    user = new_user()
    same, unembedded, other_size = (
        _recorded(user, "a", [1.0, 0.0]),
        _recorded(user, "b"),
        _recorded(user, "c", [1.0, 0.0, 0.0]),
    )
    await _write(store, same, unembedded, other_size)
    found = await search_events(
        store, "p", user, query="a", query_embedding=[0.6, 0.8], topk=10, similarity_threshold=0.0, time_range_in_days=1
    )
    assert [(e["id"], round(e["similarity"], 5)) for e in found] == [(same.event_id, 0.6)]


async def test_search_honours_the_time_range(store: Store) -> None:
    user = new_user()
    recent, old = _recorded(user, "tulips bloom", days_ago=2), _recorded(user, "tulips wilt", days_ago=40)
    await _write(store, recent, old)

    async def found(days: int) -> list[str]:
        rows = await search_events(
            store,
            "p",
            user,
            query="tulips",
            query_embedding=None,
            topk=10,
            similarity_threshold=0.2,
            time_range_in_days=days,
        )
        return [e["id"] for e in rows]

    assert await found(7) == [recent.event_id]
    assert await found(60) == [recent.event_id, old.event_id]


async def test_gists_of_a_deleted_event_are_hidden(store: Store) -> None:
    user = new_user()
    event = _recorded(user, "owls", gist="owls hoot at night")
    await _write(store, event)
    criteria = Criteria("owls", None, 10, 0.2, 30)
    assert [g["gist_data"]["content"] for g in await search_gists(store, "p", user, criteria)] == ["owls hoot at night"]
    # Deleted without naming its gists: they must not outlive the event in search.
    await _write(store, EventDropped(project_id="p", user_id=user, seq=2, event_id=event.event_id))
    assert await search_gists(store, "p", user, criteria) == []


async def test_a_query_without_words_finds_nothing(store: Store) -> None:
    user = new_user()
    await _write(store, _recorded(user, "anything at all"))
    criteria = Criteria("?!", None, 10, 0.0, 30)
    assert await search_events(store, "p", user, **vars(criteria)) == []
