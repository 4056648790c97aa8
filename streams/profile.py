"""The profile aggregate: a user's slots (topic → sub_topic → content), folded from events.

``apply`` is the one fold used everywhere: by the extract agent's Faust Table, by the
projection tests and by rebuild checks, so stream state and ClickHouse cannot disagree.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from streams.events import ProfileSlotChanged, derived_id


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True)
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
    """One stable id per slot, so an update keeps the id Memobase clients already hold."""
    return derived_id("slot", project_id, user_id, topic, sub_topic)


def apply(profile: Profile, change: ProfileSlotChanged) -> Profile:
    """Return the profile after ``change``; ``profile`` is left untouched."""
    key = slot_key(change.topic, change.sub_topic)
    result = dict(profile)
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


def to_json(profile: Profile) -> dict[str, dict]:
    return {key: slot.model_dump(mode="json") for key, slot in profile.items()}


def from_json(raw: dict[str, dict] | None) -> Profile:
    return {key: Slot.model_validate(value) for key, value in (raw or {}).items()}
