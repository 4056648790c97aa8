"""Turn facts into ClickHouse writes: rows to insert, or (rarely) a statement to run.

Pure functions of the record — no clock, no reads — so a replay writes the same rows with the
same ``version`` and ReplacingMergeTree keeps one copy. A user's rows take the ``seq`` of the
fact that wrote them as their version: the owner states a user's facts in order, so a later
fact always wins, whatever the wall clocks said. Project records take their time (µs).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.records import (
    BUFFERED_BLOB_TYPES,
    BlobDropped,
    BlobStored,
    BufferClosed,
    EditApplied,
    EventData,
    EventDropped,
    EventRecorded,
    Fact,
    OwnerProgress,
    ProfileSlotChanged,
    ProjectConfigSet,
    ProjectCreated,
    Record,
    TaskFinished,
    UsageRecorded,
    UserForgotten,
    UserStored,
)

COLUMNS: dict[str, list[str]] = {
    "users": ["project_id", "user_id", "data", "created_at", "updated_at", "version", "is_deleted"],
    "blobs": [
        "project_id",
        "user_id",
        "blob_id",
        "blob_type",
        "blob_data",
        "fields",
        "created_at",
        "stored_at",
        "version",
        "is_deleted",
    ],
    "buffer": [
        "project_id",
        "user_id",
        "blob_id",
        "blob_type",
        "status",
        "flush_id",
        "updated_at",
        "version",
        "is_deleted",
    ],
    "profiles": [
        "project_id",
        "user_id",
        "profile_id",
        "topic",
        "sub_topic",
        "content",
        "created_at",
        "updated_at",
        "version",
        "is_deleted",
    ],
    "events": [
        "project_id",
        "user_id",
        "event_id",
        "event_data",
        "event_tip",
        "tags",
        "tag_pairs",
        "embedding",
        "created_at",
        "updated_at",
        "version",
        "is_deleted",
    ],
    "event_gists": [
        "project_id",
        "user_id",
        "gist_id",
        "event_id",
        "content",
        "embedding",
        "created_at",
        "updated_at",
        "version",
        "is_deleted",
    ],
    "profile_history": [
        "project_id",
        "user_id",
        "profile_id",
        "change_id",
        "op",
        "topic",
        "sub_topic",
        "content",
        "source",
        "source_id",
        "at",
        "version",
    ],
    "usage": [
        "project_id",
        "user_id",
        "usage_id",
        "day",
        "model",
        "calls",
        "input_tokens",
        "output_tokens",
        "at",
        "version",
    ],
    "project_configs": ["project_id", "config_yaml", "updated_at", "version"],
    "projects": ["project_id", "token_sha256", "created_at", "version"],
    "tasks": ["project_id", "user_id", "task_id", "status", "error", "results", "at", "version"],
    "dead_letters": ["project_id", "user_id", "dead_letter_id", "kind", "reason", "source", "value", "at", "version"],
}
PARKED_VALUE_CHARS = 65_536  # of a dead letter's value kept in its row
# What forgetting a user erases (usage rows stay: they hold no content and are the project's bill).
USER_TABLES = (
    "users",
    "blobs",
    "buffer",
    "profiles",
    "profile_history",
    "events",
    "event_gists",
    "tasks",
    "dead_letters",
)


@dataclass(frozen=True)
class Insert:
    table: str
    row: tuple[Any, ...]


@dataclass(frozen=True)
class Statement:
    """A mutation of one read model."""

    table: str
    # with ``{table}`` for where it runs (``projections.cluster_schema.mutation_target``) and
    # ``{name:Type}`` parameters
    sql: str
    params: dict[str, Any]


Op = Insert | Statement


def version_of(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _event_row(
    p: str,
    u: str,
    event_id: str,
    data: EventData,
    embedding: list[float] | None,
    created: datetime,
    at: datetime,
    v: int,
    deleted: int,
) -> tuple[Any, ...]:
    tags = data.event_tags or []
    return (
        p,
        u,
        event_id,
        data.model_dump_json(),
        data.event_tip or "",
        [t.tag for t in tags],
        [f"{t.tag}={t.value}" for t in tags],
        embedding or [],
        created,
        at,
        v,
        deleted,
    )


def _retired_gists(p: str, u: str, event_id: str, gist_ids: list[str], at: datetime, v: int) -> list[Op]:
    return [Insert("event_gists", (p, u, g, event_id, "", [], at, at, v, 1)) for g in gist_ids]


def ops_for(record: Record) -> list[Op]:
    """The writes a memory fact or project record makes."""
    if isinstance(record, ProjectCreated):
        return [
            Insert(
                "projects", (record.project_id, record.token_sha256, record.occurred_at, version_of(record.occurred_at))
            )
        ]
    if isinstance(record, (OwnerProgress, EditApplied)):
        return []  # positions and acknowledgements: the API reads them, the read models hold nothing of them
    if isinstance(record, ProjectConfigSet):
        return [
            Insert(
                "project_configs",
                (record.project_id, record.config_yaml, record.occurred_at, version_of(record.occurred_at)),
            )
        ]
    assert isinstance(record, Fact), type(record)  # every other record left is a memory fact
    p, u, at, v = record.project_id, record.user_id, record.occurred_at, record.seq
    match record:
        case UserStored():
            return [Insert("users", (p, u, _json(record.data), record.created_at, at, v, 0))]
        case UserForgotten():
            ops: list[Op] = [
                Statement(
                    table,
                    "DELETE FROM {table} WHERE project_id = {p:String} AND user_id = {u:String}",
                    {"p": p, "u": u},
                )
                for table in USER_TABLES
            ]
            return [*ops, Insert("users", (p, u, "", at, at, v, 1))]
        case BlobStored():
            ops = [
                Insert(
                    "blobs",
                    (
                        p,
                        u,
                        record.blob_id,
                        record.blob_type.value,
                        _json(record.blob_data),
                        _json(record.fields or {}),
                        record.created_at,
                        at,
                        v,
                        0,
                    ),
                ),
                Insert("tasks", (p, u, record.task_id, "running", "", "[]", at, v)),
            ]
            if record.blob_type in BUFFERED_BLOB_TYPES:
                ops.append(Insert("buffer", (p, u, record.blob_id, record.blob_type.value, "idle", "", at, v, 0)))
            return ops
        case BlobDropped():
            return [
                Insert("blobs", (p, u, record.blob_id, "", "", "", at, at, v, 1)),
                Insert("buffer", (p, u, record.blob_id, "", "", "", at, v, 1)),
            ]
        case BufferClosed():
            return [
                *(
                    Insert("buffer", (p, u, b, record.blob_type.value, "processing", record.flush_id, at, v, 0))
                    for b in record.blob_ids
                ),
                *(Insert("tasks", (p, u, t, "running", "", "[]", at, v)) for t in record.task_ids),
            ]
        case ProfileSlotChanged():
            deleted = 1 if record.op == "delete" else 0
            created = record.created_at or at
            row: tuple[Any, ...] = (
                p,
                u,
                record.profile_id,
                record.topic,
                record.sub_topic,
                record.content,
                created,
                at,
                v,
                deleted,
            )
            history = (
                p,
                u,
                record.profile_id,
                record.record_id,
                record.op,
                record.topic,
                record.sub_topic,
                record.content,
                record.source,
                record.source_id,
                at,
                v,
            )
            return [Insert("profiles", row), Insert("profile_history", history)]
        case EventRecorded():
            e = record.event_id
            created = record.created_at or at
            ops = [Insert("events", _event_row(p, u, e, record.event_data, record.embedding, created, at, v, 0))]
            ops += [
                Insert("event_gists", (p, u, g.gist_id, e, g.content, g.embedding or [], created, at, v, 0))
                for g in record.gists
            ]
            return ops + _retired_gists(p, u, e, record.retired_gist_ids, at, v)
        case EventDropped():
            e = record.event_id
            ops = [Insert("events", _event_row(p, u, e, EventData(), None, at, at, v, 1))]
            return ops + _retired_gists(p, u, e, record.gist_ids, at, v)
        case UsageRecorded():
            row = (
                p,
                u,
                record.record_id,
                at.date(),
                record.model,
                record.calls,
                record.input_tokens,
                record.output_tokens,
                at,
                v,
            )
            return [Insert("usage", row)]
        case TaskFinished():
            status = "done" if record.status == "completed" else "failed"
            outcomes = _json([o.model_dump() for o in record.outcomes])
            ops = [
                Insert("tasks", (p, u, t, record.status, record.error or "", outcomes, at, v)) for t in record.task_ids
            ]
            ops += [
                Insert("buffer", (p, u, b, record.blob_type.value, status, record.flush_id, at, v, 0))
                for b in record.blob_ids
            ]
            return ops
    raise TypeError(f"no projection for {type(record).__name__}")


def dead_letter_ops(
    where: str, key: bytes | None, value: bytes | None, headers: dict[str, bytes], at: datetime, version: int
) -> list[Op]:
    """The row of one dead letter (``where`` is its topic:partition:offset): the record as it was
    parked, its kind when it is a record, and the reason and source its headers give."""
    project, _, user = (key or b"").decode(errors="replace").partition(":")
    text = (value or b"").decode(errors="replace")
    try:
        kind = str(json.loads(text).get("kind", "")) if text.startswith("{") else ""
    except (ValueError, AttributeError):
        kind = ""
    reason = headers.get("error", b"").decode(errors="replace")
    source = headers.get("source", b"").decode(errors="replace")
    return [
        Insert(
            "dead_letters",
            (project, user, where, kind or "undecodable", reason, source, text[:PARKED_VALUE_CHARS], at, version),
        )
    ]
