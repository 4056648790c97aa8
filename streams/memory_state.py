"""How a user's memory is kept on the state topic (``memstream.state``): as small records, each
bounded, so no user's memory is ever one record too large for the broker.

    <project>:<user>|h               header: seq, created_at, the open window's weights and blob
                                     ids, the queue's item ids, whether its head runs
    <project>:<user>|b|<blob_id>     one blob of the open window
    <project>:<user>|s|<profile_id>  one profile slot
    <project>:<user>|q|<item_id>     one queued item (a closed window, an edit, a flush request)

``changes`` gives what a step wrote (a value, or None to delete: a tombstone on the compacted
topic); ``restore`` rebuilds every user's memory from the records of one partition.
Unchanged parts of a memory are the same objects from step to step, so a diff compares identities.
"""

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, TypeAdapter

from streams.buffer import Window
from streams.owner import Queued, UserMemory, queued_id
from streams.profile import Slot, slot_key
from streams.records import (
    BlobType,
    BufferedBlob,
    BufferFlushed,
    Content,
    EventDeleted,
    EventEdited,
    FlushRequested,
    ProfileEdited,
)

_QUEUED: TypeAdapter[Queued] = TypeAdapter(
    Annotated[BufferFlushed | ProfileEdited | EventEdited | EventDeleted | FlushRequested, Field(discriminator="kind")]
)
_BLOB = TypeAdapter(BufferedBlob)


class _WindowWeights(Content):
    blob_type: BlobType
    tokens: int
    bytes: int
    messages: int
    last_at: datetime
    blob_ids: list[str]


class _Header(Content):
    seq: int
    created_at: datetime | None = None
    window: _WindowWeights | None = None
    queue: list[str] = []
    running: bool = False


def _header(memory: UserMemory) -> _Header:
    window = memory.window
    weights = (
        None
        if window is None
        else _WindowWeights(
            blob_type=window.blob_type,
            tokens=window.tokens,
            bytes=window.bytes,
            messages=window.messages,
            last_at=window.last_at,
            blob_ids=[b.blob_id for b in window.blobs],
        )
    )
    return _Header(
        seq=memory.seq,
        created_at=memory.created_at,
        window=weights,
        queue=[queued_id(item) for item in memory.queue],
        running=memory.running,
    )


# A user's blobs, slots and queued items, each by id (one state record apiece).
Parts = tuple[Mapping[str, BaseModel], Mapping[str, BaseModel], Mapping[str, BaseModel]]


def _parts(memory: UserMemory | None) -> Parts:
    if memory is None:
        return {}, {}, {}
    blobs = {b.blob_id: b for b in memory.window.blobs} if memory.window else {}
    slots = {s.profile_id: s for s in memory.slots.values()}
    queue = {queued_id(item): item for item in memory.queue}
    return blobs, slots, queue


def changes(old: UserMemory | None, new: UserMemory) -> dict[str, bytes | None]:
    """The state records that turn ``old`` into ``new``: a value to write, or None to delete."""
    out: dict[str, bytes | None] = {}
    base = new.key
    header = _header(new)
    if old is None or _header(old) != header:
        out[f"{base}|h"] = header.model_dump_json().encode()
    for tag, before, after in zip("bsq", _parts(old), _parts(new)):
        for part_id, value in after.items():
            if before.get(part_id) is not value:
                out[f"{base}|{tag}|{part_id}"] = value.model_dump_json().encode()
        for part_id in before.keys() - after.keys():
            out[f"{base}|{tag}|{part_id}"] = None
    return out


def restore(records: dict[str, bytes]) -> dict[str, UserMemory]:
    """Every user's memory from the live records of one state partition (tombstones applied)."""
    by_user: dict[str, dict[str, dict[str, bytes]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in records.items():
        user, _, rest = key.partition("|")
        tag, _, part_id = rest.partition("|")
        by_user[user][tag][part_id] = value
    memories = {}
    for user, parts in by_user.items():
        raw_header = parts.get("h", {}).get("")
        if raw_header is None:
            continue  # a user's records are written in one transaction, header included
        header = _Header.model_validate_json(raw_header)
        project_id, _, user_id = user.partition(":")
        blobs = {i: _BLOB.validate_json(v) for i, v in parts.get("b", {}).items()}
        slots = [Slot.model_validate_json(v) for v in parts.get("s", {}).values()]
        queued = {i: _QUEUED.validate_json(v) for i, v in parts.get("q", {}).items()}
        window = None
        if header.window is not None:
            w = header.window
            window = Window(
                blob_type=w.blob_type,
                blobs=tuple(blobs[i] for i in w.blob_ids),
                tokens=w.tokens,
                bytes=w.bytes,
                messages=w.messages,
                last_at=w.last_at,
            )
        memories[user] = UserMemory(
            project_id=project_id,
            user_id=user_id,
            seq=header.seq,
            created_at=header.created_at,
            window=window,
            slots={slot_key(s.topic, s.sub_topic): s for s in slots},
            queue=tuple(queued[i] for i in header.queue),
            running=header.running,
        )
    return memories
