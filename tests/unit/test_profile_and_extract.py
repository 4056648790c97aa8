"""The profile fold, change planning and the offline extractor (no broker)."""

from datetime import UTC, datetime, timedelta

from streams.extraction import Extraction, ProfileChange
from streams.jobs import outcome_of
from streams.limits import Limits
from streams.offline import OfflineExtractor, statements
from streams.profile import apply, slot_id
from streams.project_config import DEFAULT
from streams.records import BlobType, BufferedBlob, BufferFlushed, ChatMessage, ProfileSlotChanged
from streams.slot_changes import plan_changes
from streams.tokens import PIECE, count_tokens, truncate_to_tokens

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def change(op: str, content: str, at: datetime, created: datetime | None = None) -> ProfileSlotChanged:
    return ProfileSlotChanged(
        project_id="p",
        user_id="u",
        seq=1,
        occurred_at=at,
        profile_id=slot_id("p", "u", "work", "title"),
        op=op,
        topic="work",
        sub_topic="title",
        content=content,
        source_id="f",
        created_at=created,
    )


def flushed(*lines: str) -> BufferFlushed:
    blob = BufferedBlob(
        blob_id="b", task_id="t", created_at=T0, messages=[ChatMessage(role="user", content=x) for x in lines]
    )
    return BufferFlushed(
        project_id="p",
        user_id="u",
        flush_id="f1",
        blob_type=BlobType.chat,
        reason="request",
        blobs=[blob],
        task_ids=["t"],
    )


def test_fold_keeps_creation_time_and_deletes() -> None:
    profile = apply({}, change("add", "pilot", T0))
    later = T0 + timedelta(days=1)
    profile = apply(profile, change("update", "captain", later, created=T0))
    slot = profile["work::title"]
    assert (slot.content, slot.created_at, slot.updated_at) == ("captain", T0, later)
    assert apply(profile, change("delete", "", later)) == {}


def test_plan_turns_add_on_existing_slot_into_update_and_drops_impossible_changes() -> None:
    profile = apply({}, change("add", "pilot", T0))
    extraction = Extraction(
        changes=[
            ProfileChange(op="add", topic=" Work ", sub_topic="TITLE", content="captain"),
            ProfileChange(op="delete", topic="basic_info", sub_topic="age"),
            ProfileChange(op="update", topic="interest", sub_topic="likes", content="tea"),
            ProfileChange(op="add", topic="interest", sub_topic="dislikes", content="  "),
        ]
    )
    planned = plan_changes(flushed("x"), extraction, profile, DEFAULT, Limits())
    assert [(c.op, c.topic, c.sub_topic) for c in planned] == [
        ("update", "work", "title"),
        ("add", "interest", "likes"),
    ]
    assert planned[0].created_at == T0
    again = plan_changes(flushed("x"), extraction, profile, DEFAULT, Limits())  # a replay: same ids, same contents
    assert [c.model_dump(exclude={"occurred_at"}) for c in again] == [
        c.model_dump(exclude={"occurred_at"}) for c in planned
    ]
    outcome = outcome_of(planned, "e1")
    assert outcome.updated == [planned[0].profile_id] and outcome.added == [planned[1].profile_id]


def test_plan_bounds_the_answer() -> None:
    extraction = Extraction(
        changes=[ProfileChange(op="add", topic="t", sub_topic=f"s{i}", content="x" * 5000) for i in range(40)]
    )
    planned = plan_changes(flushed("x"), extraction, {}, DEFAULT, Limits(changes_per_flush=32, slot_chars=2000))
    assert len(planned) == 32 and {len(c.content) for c in planned} == {2000}


async def test_offline_extractor_reads_plain_sentences_and_merges_likes() -> None:
    extractor = OfflineExtractor()
    first = await extractor.extract(
        [ChatMessage(role="user", content="My name is Ada Lovelace and I live in London. I love chess.")], {}, DEFAULT
    )
    assert {(c.topic, c.sub_topic, c.content) for c in first.changes} == {
        ("basic_info", "name", "Ada Lovelace"),
        ("basic_info", "city", "London"),
        ("interest", "likes", "chess"),
    }
    profile = {}
    for c in plan_changes(flushed("x"), first, {}, DEFAULT, Limits()):
        profile = apply(profile, c)
    second = await extractor.extract(
        [
            ChatMessage(role="user", content="I like go. I love chess."),
            ChatMessage(role="assistant", content="My name is Bot."),
        ],
        profile,
        DEFAULT,
    )
    assert [(c.op, c.content) for c in second.changes] == [("update", "chess, go")]
    assert first.usage.calls == second.usage.calls == 0  # nothing to bill


def test_offline_extractor_and_tokenizer_stay_linear_on_hostile_text() -> None:
    """Long whitespace runs used to make the extractor's patterns quadratic: it now scans words."""
    hostile = "I live in x" + " " * 24_000 + "y and I like tea" + " " * 24_000
    assert statements(hostile) == [("basic_info", "city", "x y"), ("interest", "likes", "tea")]
    assert statements("I like " + "a " * 10_000)[0][2].count("a") == 10_000
    spaces = " " * (PIECE * 20)
    assert 0 < count_tokens(spaces) <= PIECE * 20 // 4  # counted piece by piece, never one huge piece
    text = "The quick brown fox jumps over the lazy dog. " * 400
    assert count_tokens(text) == 10 * 400 or abs(count_tokens(text) - 10 * 400) <= len(text) // PIECE + 1
    cut = truncate_to_tokens(text, 25)
    assert text.startswith(cut) and count_tokens(cut) <= 25 and len(cut) > 50
