"""The profile aggregate: a user's slots (topic → sub_topic → content), folded from events.

``apply`` is the one fold used everywhere: by the extract agent's Faust Table, by the
projection tests and by rebuild checks, so stream state and ClickHouse cannot disagree.

The Table holds a ``UserProfile``: the slots and the ids of the last records applied to them
(``streams.applied``), written in one changelog record, so a flush read again after a restart
is skipped instead of being extracted again against a profile it already changed.
"""

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from streams.applied import was_applied, with_applied
from streams.events import ProfileSlotChanged, Record, derived_id


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


@dataclass(frozen=True)
class UserProfile:
    """A user's slots and the ids of the last records applied to them (``streams.applied``)."""

    slots: Profile
    applied: tuple[str, ...] = ()

    def has_applied(self, record: Record) -> bool:
        return was_applied(self.applied, record)

    def after(self, slots: Profile, record: Record) -> "UserProfile":
        return UserProfile(slots, with_applied(self.applied, record))

    def to_json(self) -> dict:
        return {"slots": to_json(self.slots), "applied": list(self.applied)}

    @classmethod
    def from_json(cls, raw: dict | None) -> "UserProfile":
        if raw is None:
            return cls({})
        if "slots" not in raw:  # written before the applied ids were kept: the slots alone
            return cls(from_json(raw))
        return cls(from_json(raw["slots"]), tuple(raw.get("applied", ())))  # no "applied": offsets were kept
