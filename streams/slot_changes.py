"""Planning profile slot changes against the user's current profile, from the two sources that
change it: an extractor's answer for a flush (``plan_changes``) and a manual edit
(``plan_edit``). Both are pure: the agent folds and publishes what they return.

A slot's id is a function of its key (``streams.profile.slot_id(project, user, topic,
sub_topic)``), so a flush that mentions a slot again lands on the row it already has, and a
replay produces the same ids. Consequence for manual edits: moving a slot to another
topic/sub_topic deletes the old slot and fills the new key, whose id is the new key's id.
"""

import logging
from typing import Literal

from streams.events import BufferFlushed, ProfileEdited, ProfileSlotChanged, Record, derived_id
from streams.extraction import Extraction
from streams.profile import Profile, Slot, apply, slot_id, slot_key
from streams.project_config import ProjectConfig

log = logging.getLogger(__name__)

Op = Literal["add", "update", "delete"]


def normalise(name: str) -> str:
    """Topic and sub_topic names as slots are keyed: trimmed, lowercase."""
    return name.strip().lower()


def _slot_change(
    cause: Record, index: int, op: Op, topic: str, sub_topic: str, content: str, previous: Slot | None,
    source_id: str, source: Literal["flush", "manual"],
) -> ProfileSlotChanged:
    return ProfileSlotChanged(
        project_id=cause.project_id,
        user_id=cause.user_id,
        event_id=derived_id(source_id, "slot", str(index)),
        profile_id=previous.profile_id if previous else slot_id(cause.project_id, cause.user_id, topic, sub_topic),
        op=op,
        topic=topic,
        sub_topic=sub_topic,
        content=content,
        source_id=source_id,
        source=source,
        created_at=previous.created_at if previous else None,
    )


def plan_changes(
    flushed: BufferFlushed, extraction: Extraction, profile: Profile, config: ProjectConfig
) -> list[ProfileSlotChanged]:
    """Turn the extractor's answer into slot changes that are valid against ``profile``.

    An ``add`` on an existing slot becomes an ``update``, an ``update`` of a missing slot an
    ``add``; deleting a missing slot and empty contents are dropped; in strict mode, so are
    slots the project's config does not list.
    """
    allowed = {normalise(key) for key in config.allowed_slots()} if config.profile_strict_mode else None
    changes: list[ProfileSlotChanged] = []
    current = profile
    for index, change in enumerate(extraction.changes):
        topic, sub_topic = normalise(change.topic), normalise(change.sub_topic)
        key = slot_key(topic, sub_topic)
        if allowed is not None and key not in allowed:
            log.info("flush %s: strict mode drops %s", flushed.flush_id, key)
            continue
        content = change.content.strip()
        previous = current.get(key)
        if change.op == "delete":
            if previous is None:
                continue
            op: Op = "delete"
        elif not content:
            continue
        else:
            op = "update" if previous else "add"
        slot_change = _slot_change(flushed, index, op, topic, sub_topic, content, previous, flushed.flush_id, "flush")
        current = apply(current, slot_change)
        changes.append(slot_change)
    return changes


def _find(profile: Profile, profile_id: str | None) -> Slot | None:
    return next((slot for slot in profile.values() if slot.profile_id == profile_id), None)


def plan_edit(edit: ProfileEdited, profile: Profile) -> list[ProfileSlotChanged]:
    """The slot changes a manual edit makes; strict mode does not apply (a person chose the slot).

    - ``add`` fills ``topic::sub_topic``; an existing slot there is updated with the new content.
    - ``update`` finds the slot by ``profile_id``; empty topic, sub_topic or content keep the
      slot's own. Same key: an update. Another key: the old slot is deleted and the new key is
      filled (updated if it already has a slot), keeping the moved slot's creation time.
    - ``delete`` deletes the slot found by ``profile_id``.
    An edit whose slot is not in the profile, or that leaves nothing to write, changes nothing.
    """
    source = edit.event_id
    if edit.op == "add":
        topic, sub_topic, content = normalise(edit.topic), normalise(edit.sub_topic), edit.content.strip()
        if not (topic and sub_topic and content):
            log.warning("profile edit %s: add needs a topic, sub_topic and content; ignored", source)
            return []
        previous = profile.get(slot_key(topic, sub_topic))
        op: Op = "update" if previous else "add"
        return [_slot_change(edit, 0, op, topic, sub_topic, content, previous, source, "manual")]
    slot = _find(profile, edit.profile_id)
    if slot is None:
        log.warning("profile edit %s: no slot %s for user %s; ignored", source, edit.profile_id, edit.user_id)
        return []
    if edit.op == "delete":
        return [_slot_change(edit, 0, "delete", slot.topic, slot.sub_topic, "", slot, source, "manual")]
    topic, sub_topic = normalise(edit.topic) or slot.topic, normalise(edit.sub_topic) or slot.sub_topic
    content = edit.content.strip() or slot.content
    if (topic, sub_topic) == (slot.topic, slot.sub_topic):
        return [_slot_change(edit, 0, "update", topic, sub_topic, content, slot, source, "manual")]
    target = profile.get(slot_key(topic, sub_topic))
    moved = target or slot.model_copy(update={"profile_id": slot_id(edit.project_id, edit.user_id, topic, sub_topic)})
    return [
        _slot_change(edit, 0, "delete", slot.topic, slot.sub_topic, "", slot, source, "manual"),
        _slot_change(edit, 1, "update" if target else "add", topic, sub_topic, content, moved, source, "manual"),
    ]
