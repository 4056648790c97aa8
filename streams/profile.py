"""The profile aggregate: a user's slots (topic → sub_topic → content), folded from facts.

``apply`` is the one fold used everywhere: by the owner's state, by the projection tests and by
rebuild checks, so stream state and ClickHouse cannot disagree.

A slot keeps its id for its whole life, also when a manual edit moves it to another
topic/sub_topic (as Memobase does): a client may hold the id. A new slot takes the id derived
from its key (``slot_id``), or, when a moved slot holds that id already, one derived from the
record that creates it.
"""

from datetime import datetime

from streams.records import Content, ProfileSlotChanged, derived_id


class Slot(Content):
    profile_id: str
    topic: str
    sub_topic: str
    content: str
    created_at: datetime
    updated_at: datetime


Profile = dict[str, Slot]


def slot_key(topic: str, sub_topic: str) -> str:
    return f"{topic}::{sub_topic}"


def slot_id(project_id: str, user_id: str, topic: str, sub_topic: str) -> str:
    """The id of a slot first filled at ``topic::sub_topic``."""
    return derived_id("slot", project_id, user_id, topic, sub_topic)


def new_slot_id(profile: Profile, project_id: str, user_id: str, topic: str, sub_topic: str, source_id: str) -> str:
    """The id a new slot at ``topic::sub_topic`` takes in ``profile``."""
    natural = slot_id(project_id, user_id, topic, sub_topic)
    if all(slot.profile_id != natural for slot in profile.values()):
        return natural
    return derived_id("slot", source_id, topic, sub_topic)


def find(profile: Profile, profile_id: str | None) -> Slot | None:
    return next((slot for slot in profile.values() if slot.profile_id == profile_id), None)


def apply(profile: Profile, change: ProfileSlotChanged) -> Profile:
    """Return the profile after ``change``; ``profile`` is left untouched. The slot leaves any
    other key it held (a move)."""
    key = slot_key(change.topic, change.sub_topic)
    result = {k: s for k, s in profile.items() if s.profile_id != change.profile_id or k == key}
    if change.op == "delete":
        result.pop(key, None)
        return result
    result[key] = Slot(
        profile_id=change.profile_id,
        topic=change.topic,
        sub_topic=change.sub_topic,
        content=change.content,
        created_at=change.created_at or change.occurred_at,
        updated_at=change.occurred_at,
    )
    return result
