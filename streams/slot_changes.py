"""Planning profile slot changes against the user's current profile, from the two sources that
change it: an extractor's answer for a flush (``plan_changes``) and a manual edit
(``plan_edit``). Both are pure: the owner folds and states what they return.

A slot keeps its id (``streams.profile``): a flush that mentions a slot again lands on the slot
it has, and a manual edit that moves a slot to another topic/sub_topic keeps its id.
"""

import logging
from typing import Literal

from streams.extraction import Extraction
from streams.limits import Limits, cut
from streams.profile import Profile, Slot, apply, find, new_slot_id, slot_key
from streams.project_config import ProjectConfig
from streams.records import BufferFlushed, ProfileEdited, ProfileSlotChanged, Record, derived_id

log = logging.getLogger(__name__)

Op = Literal["add", "update", "delete"]


def normalise(name: str) -> str:
    """Topic and sub_topic names as slots are keyed: trimmed, lowercase."""
    return name.strip().lower()


def _slot_change(
    cause: Record,
    index: int,
    op: Op,
    topic: str,
    sub_topic: str,
    content: str,
    slot: Slot | None,
    profile: Profile,
    source_id: str,
    source: Literal["flush", "manual"],
) -> ProfileSlotChanged:
    """The change ``index`` of ``cause`` to ``slot`` (a new one at topic::sub_topic when None)."""
    profile_id = (
        slot.profile_id if slot else new_slot_id(profile, cause.project_id, cause.user_id, topic, sub_topic, source_id)
    )
    return ProfileSlotChanged(
        project_id=cause.project_id,
        user_id=cause.user_id,
        record_id=derived_id(source_id, "slot", str(index)),
        seq=0,
        profile_id=profile_id,
        op=op,
        topic=topic,
        sub_topic=sub_topic,
        content=content,
        source_id=source_id,
        source=source,
        created_at=slot.created_at if slot else None,
    )


def plan_changes(
    flushed: BufferFlushed, extraction: Extraction, profile: Profile, config: ProjectConfig, limits: Limits
) -> list[ProfileSlotChanged]:
    """Turn the extractor's answer into slot changes that are valid against ``profile``.

    An ``add`` on an existing slot becomes an ``update``, an ``update`` of a missing slot an
    ``add``; deleting a missing slot and empty contents are dropped; in strict mode, so are
    slots the project's config does not list. Contents are cut to ``limits.slot_chars`` and the
    changes to ``limits.changes_per_flush``.
    """
    allowed = {normalise(key) for key in config.allowed_slots()} if config.profile_strict_mode else None
    changes: list[ProfileSlotChanged] = []
    current = profile
    if len(extraction.changes) > limits.changes_per_flush:
        log.warning(
            "flush %s: the extractor answered %d changes; keeping the first %d",
            flushed.flush_id,
            len(extraction.changes),
            limits.changes_per_flush,
        )
    for index, change in enumerate(extraction.changes[: limits.changes_per_flush]):
        topic, sub_topic = normalise(change.topic), normalise(change.sub_topic)
        key = slot_key(topic, sub_topic)
        if allowed is not None and key not in allowed:
            log.info("flush %s: strict mode drops %s", flushed.flush_id, key)
            continue
        content = cut(change.content.strip(), limits.slot_chars)
        previous = current.get(key)
        if change.op == "delete":
            if previous is None:
                continue
            op: Op = "delete"
        elif not content:
            continue
        else:
            op = "update" if previous else "add"
        slot_change = _slot_change(
            flushed, index, op, topic, sub_topic, content, previous, current, flushed.flush_id, "flush"
        )
        current = apply(current, slot_change)
        changes.append(slot_change)
    return changes


def plan_edit(edit: ProfileEdited, profile: Profile) -> list[ProfileSlotChanged]:
    """The slot changes a manual edit makes; strict mode does not apply (a person chose the slot).

    - ``add`` fills ``topic::sub_topic``; an existing slot there is updated with the new content.
    - ``update`` finds the slot by ``profile_id``; empty topic, sub_topic or content keep the
      slot's own. Another topic/sub_topic moves the slot there, keeping its id and creation time;
      a slot already at that key is deleted first (the edited slot is the one the client holds).
    - ``delete`` deletes the slot found by ``profile_id``.
    An edit whose slot is not in the profile, or that leaves nothing to write, changes nothing.
    """
    source = edit.record_id
    if edit.op == "add":
        topic, sub_topic, content = normalise(edit.topic), normalise(edit.sub_topic), edit.content.strip()
        if not (topic and sub_topic and content):
            log.warning("profile edit %s: add needs a topic, sub_topic and content; ignored", source)
            return []
        previous = profile.get(slot_key(topic, sub_topic))
        op: Op = "update" if previous else "add"
        return [_slot_change(edit, 0, op, topic, sub_topic, content, previous, profile, source, "manual")]
    slot = find(profile, edit.profile_id)
    if slot is None:
        log.warning("profile edit %s: no slot %s for user %s; ignored", source, edit.profile_id, edit.user_id)
        return []
    if edit.op == "delete":
        return [_slot_change(edit, 0, "delete", slot.topic, slot.sub_topic, "", slot, profile, source, "manual")]
    topic, sub_topic = normalise(edit.topic) or slot.topic, normalise(edit.sub_topic) or slot.sub_topic
    content = edit.content.strip() or slot.content
    occupant = profile.get(slot_key(topic, sub_topic))
    changes = []
    if occupant is not None and occupant.profile_id != slot.profile_id:
        changes.append(_slot_change(edit, 0, "delete", topic, sub_topic, "", occupant, profile, source, "manual"))
    changes.append(_slot_change(edit, 1, "update", topic, sub_topic, content, slot, profile, source, "manual"))
    return changes
