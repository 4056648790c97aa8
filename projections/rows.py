"""Turn event records into ClickHouse writes: rows to insert, or (rarely) a statement to run.

Pure functions of the record — no clock, no reads — so a replay writes the same rows with
the same ``version`` and ReplacingMergeTree keeps one copy.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.events import (
    AnyRecord,
    BlobBuffered,
    BlobDeleted,
    BlobInserted,
    BufferFlushed,
    EventData,
    EventDeleted,
    EventEdited,
    EventRecorded,
    FlushRequested,
    ProfileEdited,
    ProfileSlotChanged,
    ProjectConfigSet,
    ProjectCreated,
    TaskFinished,
    UsageRecorded,
    UserCreated,
    UserDeleted,
    UserUpdated,
)

COLUMNS: dict[str, list[str]] = {
    "users": ["project_id", "user_id", "data", "created_at", "updated_at", "version", "is_deleted"],
    "blobs": ["project_id", "user_id", "blob_id", "blob_type", "blob_data", "fields", "created_at", "version", "is_deleted"],
    "buffer": ["project_id", "user_id", "blob_id", "blob_type", "status", "updated_at", "version", "is_deleted"],
    "profiles": [
        "project_id", "user_id", "profile_id", "topic", "sub_topic", "content",
        "created_at", "updated_at", "version", "is_deleted",
    ],
    "events": [
        "project_id", "user_id", "event_id", "event_data", "event_tip", "tags", "tag_pairs", "embedding",
        "created_at", "updated_at", "version", "is_deleted",
    ],
    "event_gists": [
        "project_id", "user_id", "gist_id", "event_id", "content", "embedding",
        "created_at", "updated_at", "version", "is_deleted",
    ],
    "profile_history": [
        "project_id", "user_id", "profile_id", "change_id", "op", "topic", "sub_topic", "content",
        "source", "source_id", "at", "version",
    ],
    "usage": [
        "project_id", "user_id", "usage_id", "day", "model", "calls", "input_tokens", "output_tokens", "at", "version",
    ],
    "project_configs": ["project_id", "config_yaml", "updated_at", "version"],
    "projects": ["project_id", "token_sha256", "created_at", "version"],
    "tasks": ["project_id", "user_id", "task_id", "status", "error", "results", "at", "version"],
}
# What deleting a user erases (usage rows stay: they hold no content and are the project's bill).
USER_TABLES = ("blobs", "buffer", "profiles", "profile_history", "events", "event_gists", "tasks")


@dataclass(frozen=True)
class Insert:
    table: str
    row: tuple[Any, ...]


@dataclass(frozen=True)
class Statement:
    sql: str  # with ``{db}`` for the database and ``{name:Type}`` parameters
    params: dict[str, Any]


Op = Insert | Statement


def version_of(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _event_row(p: str, u: str, event_id: str, data: EventData, embedding: list[float] | None,
               created: datetime, at: datetime, v: int, deleted: int) -> tuple[Any, ...]:
    tags = data.event_tags or []
    return (
        p, u, event_id, data.model_dump_json(), data.event_tip or "",
        [t.tag for t in tags], [f"{t.tag}={t.value}" for t in tags], embedding or [],
        created, at, v, deleted,
    )


def _retired_gists(p: str, u: str, event_id: str, gist_ids: list[str], at: datetime, v: int) -> list[Op]:
    return [Insert("event_gists", (p, u, g, event_id, "", [], at, at, v, 1)) for g in gist_ids]


def ops_for(record: AnyRecord) -> list[Op]:
    p, u, at, v = record.project_id, record.user_id, record.occurred_at, version_of(record.occurred_at)
    match record:
        case UserCreated():
            return [Insert("users", (p, u, _json(record.data or {}), at, at, v, 0))]
        case UserUpdated():
            # Keep the user's created_at: copy it from the current row, server-side.
            sql = (
                "INSERT INTO {db}.users SELECT project_id, user_id, {data:String}, created_at, {at:DateTime64(3)}, "
                "{v:UInt64}, 0 FROM {db}.users FINAL WHERE project_id = {p:String} AND user_id = {u:String}"
            )
            return [Statement(sql, {"data": _json(record.data or {}), "at": at, "v": v, "p": p, "u": u})]
        case UserDeleted():
            ops: list[Op] = [Insert("users", (p, u, "", at, at, v, 1))]
            for table in USER_TABLES:
                sql = f"DELETE FROM {{db}}.{table} WHERE project_id = {{p:String}} AND user_id = {{u:String}}"
                ops.append(Statement(sql, {"p": p, "u": u}))
            return ops
        case BlobInserted():
            blob = (p, u, record.blob_id, record.blob_type.value, _json(record.blob_data), _json(record.fields or {}))
            return [
                # A user first seen through a blob exists with version 0, so any real create wins.
                Insert("users", (p, u, "{}", at, at, 0, 0)),
                Insert("blobs", (*blob, record.created_at, v, 0)),
                Insert("tasks", (p, u, record.task_id, "running", "", "[]", at, v)),
            ]
        case BlobDeleted():
            return [
                Insert("blobs", (p, u, record.blob_id, "", "", "", at, v, 1)),
                Insert("buffer", (p, u, record.blob_id, "", "", at, v, 1)),
            ]
        case FlushRequested():
            return [Insert("tasks", (p, u, record.task_id, "running", "", "[]", at, v))] if record.reason == "request" else []
        case BlobBuffered():
            return [Insert("buffer", (p, u, record.blob_id, record.blob_type.value, "idle", at, v, 0))]
        case BufferFlushed():
            return [
                Insert("buffer", (p, u, b.blob_id, record.blob_type.value, "processing", at, v, 0))
                for b in record.blobs
            ]
        case ProfileSlotChanged():
            deleted = 1 if record.op == "delete" else 0
            created = record.created_at or at
            row = (p, u, record.profile_id, record.topic, record.sub_topic, record.content, created, at, v, deleted)
            history = (
                p, u, record.profile_id, record.event_id, record.op, record.topic, record.sub_topic, record.content,
                record.source, record.source_id, at, v,
            )
            return [Insert("profiles", row), Insert("profile_history", history)]
        case EventRecorded():
            e = record.user_event_id
            created = record.created_at or at
            ops = [Insert("events", _event_row(p, u, e, record.event_data, record.embedding, created, at, v, 0))]
            ops += [
                Insert("event_gists", (p, u, g.gist_id, e, g.content, g.embedding or [], created, at, v, 0))
                for g in record.gists
            ]
            return ops + _retired_gists(p, u, e, record.retired_gist_ids, at, v)
        case EventDeleted():
            e = record.user_event_id
            ops = [Insert("events", _event_row(p, u, e, EventData(), None, at, at, v, 1))]
            return ops + _retired_gists(p, u, e, record.gist_ids, at, v)
        case ProfileEdited() | EventEdited():
            return []  # commands for the extract agent; their effects arrive as memory records
        case UsageRecorded():
            row = (p, u, record.event_id, at.date(), record.model, record.calls, record.input_tokens, record.output_tokens, at, v)
            return [Insert("usage", row)]
        case ProjectCreated():
            return [Insert("projects", (p, record.token_sha256, at, v))]
        case ProjectConfigSet():
            return [Insert("project_configs", (p, record.config_yaml, at, v))]
        case TaskFinished():
            status = "done" if record.status == "completed" else "failed"
            results = _json([r.model_dump() for r in record.results])
            ops = [Insert("tasks", (p, u, t, record.status, record.error or "", results, at, v)) for t in record.task_ids]
            ops += [Insert("buffer", (p, u, b, record.blob_type.value, status, at, v, 0)) for b in record.blob_ids]
            return ops
    raise TypeError(f"no projection for {type(record).__name__}")
