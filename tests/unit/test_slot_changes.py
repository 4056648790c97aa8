"""Planning slot changes: strict mode for flushes, manual edits, and which tags an event keeps."""

from datetime import UTC, datetime

from streams.extraction import Extraction, ProfileChange
from streams.jobs import keep_tags
from streams.limits import Limits
from streams.profile import Profile, apply, slot_id
from streams.project_config import DEFAULT, parse
from streams.records import BlobType, BufferFlushed, EventTag, ProfileEdited, ProfileSlotChanged
from streams.slot_changes import plan_changes, plan_edit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLUSH = BufferFlushed(
    project_id="p", user_id="u", flush_id="f1", blob_type=BlobType.chat, reason="request", blobs=[], task_ids=[]
)
STRICT = parse("""
profile_strict_mode: true
overwrite_user_profiles:
  - topic: Work
    sub_topics: [Title]
event_tags:
  - name: mood
""")


def fold(changes: list[ProfileSlotChanged], profile: Profile | None = None) -> Profile:
    profile = profile or {}
    for change in changes:
        profile = apply(profile, change)
    return profile


def seeded() -> Profile:
    return fold(
        plan_changes(
            FLUSH,
            Extraction(
                changes=[
                    ProfileChange(op="add", topic="work", sub_topic="title", content="pilot"),
                    ProfileChange(op="add", topic="interest", sub_topic="likes", content="tea"),
                ]
            ),
            {},
            DEFAULT,
            Limits(),
        )
    )


def edit(op: str, **fields: str) -> ProfileEdited:
    return ProfileEdited(project_id="p", user_id="u", record_id="edit-1", occurred_at=T0, op=op, **fields)


def test_strict_mode_keeps_only_configured_slots() -> None:
    extraction = Extraction(
        changes=[
            ProfileChange(op="add", topic="work", sub_topic="title", content="pilot"),
            ProfileChange(op="add", topic="work", sub_topic="company", content="Air"),
            ProfileChange(op="add", topic="interest", sub_topic="likes", content="tea"),
        ]
    )
    assert [c.sub_topic for c in plan_changes(FLUSH, extraction, {}, STRICT, Limits())] == ["title"]
    assert len(plan_changes(FLUSH, extraction, {}, DEFAULT, Limits())) == 3  # not strict: the model may open slots


def test_tags_outside_the_config_are_dropped() -> None:
    tags = [
        EventTag(tag="mood", value=" glad "),
        EventTag(tag="weather", value="rain"),
        EventTag(tag="mood", value="sad"),
    ]
    assert keep_tags(tags, STRICT) == [EventTag(tag="mood", value="glad")]
    assert keep_tags(tags, DEFAULT) == []


def test_manual_add_fills_a_slot_or_updates_the_existing_one_ignoring_strict_mode() -> None:
    profile = seeded()
    [added] = plan_edit(edit("add", topic=" Food ", sub_topic="Fruit", content="figs"), profile)
    assert (added.op, added.topic, added.sub_topic, added.source, added.source_id) == (
        "add",
        "food",
        "fruit",
        "manual",
        "edit-1",
    )
    assert added.profile_id == slot_id("p", "u", "food", "fruit")
    [updated] = plan_edit(edit("add", topic="work", sub_topic="title", content="captain"), profile)
    assert (updated.op, updated.profile_id, updated.created_at) == (
        "update",
        profile["work::title"].profile_id,
        profile["work::title"].created_at,
    )


def test_manual_update_in_place_and_move_keeps_the_slot_id() -> None:
    profile = seeded()
    title = profile["work::title"]
    [same] = plan_edit(edit("update", profile_id=title.profile_id, content="captain"), profile)
    assert (same.op, same.profile_id, same.topic, same.content) == ("update", title.profile_id, "work", "captain")
    [moved] = plan_edit(edit("update", profile_id=title.profile_id, topic="career", sub_topic="role"), profile)
    assert (moved.op, moved.profile_id, moved.topic, moved.sub_topic, moved.content) == (
        "update",
        title.profile_id,
        "career",
        "role",
        "pilot",
    )
    assert moved.created_at == title.created_at
    after = fold([moved], profile)
    assert set(after) == {"career::role", "interest::likes"} and after["career::role"].profile_id == title.profile_id
    likes = profile["interest::likes"]
    onto = plan_edit(edit("update", profile_id=title.profile_id, topic="interest", sub_topic="likes"), profile)
    assert [(c.op, c.profile_id) for c in onto] == [("delete", likes.profile_id), ("update", title.profile_id)]
    assert onto[0].record_id != onto[1].record_id
    assert {k: s.profile_id for k, s in fold(onto, profile).items()} == {"interest::likes": title.profile_id}


def test_a_new_slot_at_a_key_a_moved_slot_came_from_takes_a_fresh_id() -> None:
    profile = seeded()
    title = profile["work::title"]
    moved = fold(
        plan_edit(edit("update", profile_id=title.profile_id, topic="career", sub_topic="role"), profile), profile
    )
    [again] = plan_edit(edit("add", topic="work", sub_topic="title", content="navigator"), moved)
    assert again.op == "add" and again.profile_id != title.profile_id


def test_manual_delete_and_unknown_slot() -> None:
    profile = seeded()
    likes = profile["interest::likes"]
    [deleted] = plan_edit(edit("delete", profile_id=likes.profile_id), profile)
    assert (deleted.op, deleted.topic, deleted.sub_topic) == ("delete", "interest", "likes")
    assert "interest::likes" not in apply(profile, deleted)
    assert plan_edit(edit("delete", profile_id="missing"), profile) == []
    assert plan_edit(edit("update", profile_id="missing", content="x"), profile) == []
    assert plan_edit(edit("add", topic="work", sub_topic="", content="x"), profile) == []
