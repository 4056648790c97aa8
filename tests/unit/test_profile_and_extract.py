"""The profile fold, change planning and the offline extractor (no broker)."""

from datetime import datetime, timedelta, timezone

from streams.events import BlobType, BufferedBlob, BufferFlushed, ChatMessage, ProfileSlotChanged
from streams.extract import summarize
from streams.extraction import Extraction, ProfileChange
from streams.applied import KEPT
from streams.offline import OfflineExtractor
from streams.profile import UserProfile, apply, from_json, slot_id, to_json
from streams.project_config import DEFAULT
from streams.slot_changes import plan_changes

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def change(op: str, content: str, at: datetime, created: datetime | None = None) -> ProfileSlotChanged:
    return ProfileSlotChanged(project_id="p", user_id="u", occurred_at=at, profile_id=slot_id("p", "u", "work", "title"),
                              op=op, topic="work", sub_topic="title", content=content, source_id="f", created_at=created)


def flushed(*lines: str) -> BufferFlushed:
    blob = BufferedBlob(blob_id="b", task_id="t", created_at=T0, messages=[ChatMessage(role="user", content=x) for x in lines])
    return BufferFlushed(project_id="p", user_id="u", flush_id="f1", blob_type=BlobType.chat, reason="request",
                         blobs=[blob], task_ids=["t"])


def test_fold_keeps_creation_time_and_deletes() -> None:
    profile = apply({}, change("add", "pilot", T0))
    later = T0 + timedelta(days=1)
    profile = apply(profile, change("update", "captain", later, created=T0))
    slot = profile["work::title"]
    assert (slot.content, slot.created_at, slot.updated_at) == ("captain", T0, later)
    assert from_json(to_json(profile)) == profile
    assert apply(profile, change("delete", "", later)) == {}


def test_user_profile_remembers_the_last_records_applied() -> None:
    slots = apply({}, change("add", "pilot", T0))
    records = [change("add", "pilot", T0) for _ in range(KEPT + 1)]  # each with its own event id
    state = UserProfile({})
    for record in records:
        state = state.after(slots, record)
    assert not state.has_applied(records[0]) and all(state.has_applied(r) for r in records[1:])
    assert UserProfile.from_json(state.to_json()) == state
    assert UserProfile.from_json(to_json(slots)) == UserProfile(slots)  # a value written before the ids were kept
    assert UserProfile.from_json({"slots": to_json(slots), "offset": 3}) == UserProfile(slots)  # offsets were kept
    assert UserProfile.from_json(None) == UserProfile({})


def test_a_flush_under_an_applied_id_with_other_tasks_is_not_applied() -> None:
    """The buffer agent, reading its input again, can flush under the same id with other blobs."""
    first = flushed()
    again = first.model_copy(update={"task_ids": [*first.task_ids, "t2"]})
    state = UserProfile({}).after({}, first)
    assert state.has_applied(first) and state.has_applied(first.model_copy()) and not state.has_applied(again)


def test_plan_turns_add_on_existing_slot_into_update_and_drops_impossible_changes() -> None:
    profile = apply({}, change("add", "pilot", T0))
    extraction = Extraction(changes=[
        ProfileChange(op="add", topic=" Work ", sub_topic="TITLE", content="captain"),
        ProfileChange(op="delete", topic="basic_info", sub_topic="age"),
        ProfileChange(op="update", topic="interest", sub_topic="likes", content="tea"),
        ProfileChange(op="add", topic="interest", sub_topic="dislikes", content="  "),
    ])
    planned = plan_changes(flushed("x"), extraction, profile, DEFAULT)
    assert [(c.op, c.topic, c.sub_topic) for c in planned] == [("update", "work", "title"), ("add", "interest", "likes")]
    assert planned[0].created_at == T0
    again = plan_changes(flushed("x"), extraction, profile, DEFAULT)  # a replay: same ids, same contents
    assert [c.model_dump(exclude={"occurred_at"}) for c in again] == [c.model_dump(exclude={"occurred_at"}) for c in planned]
    summary = summarize(planned, "e1")
    assert summary.update_profiles == [planned[0].profile_id] and summary.add_profiles == [planned[1].profile_id]


async def test_offline_extractor_reads_plain_sentences_and_merges_likes() -> None:
    extractor = OfflineExtractor()
    first = await extractor.extract([ChatMessage(role="user", content="My name is Ada Lovelace and I live in London. I love chess.")], {}, DEFAULT)
    assert {(c.topic, c.sub_topic, c.content) for c in first.changes} == {
        ("basic_info", "name", "Ada Lovelace"), ("basic_info", "city", "London"), ("interest", "likes", "chess")}
    profile = {}
    for c in plan_changes(flushed("x"), first, {}, DEFAULT):
        profile = apply(profile, c)
    second = await extractor.extract([ChatMessage(role="user", content="I like go. I love chess."),
                                      ChatMessage(role="assistant", content="My name is Bot.")], profile, DEFAULT)
    assert [(c.op, c.content) for c in second.changes] == [("update", "chess, go")]
    assert first.usage.calls == second.usage.calls == 0  # nothing to bill
