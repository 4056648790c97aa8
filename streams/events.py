"""The event records: the contract between ``api/``, ``streams/`` and ``projections/``.

Every record is immutable, carries ``v`` (schema version), ``event_id``, ``occurred_at``,
``project_id`` and ``user_id``, and is keyed on the wire by ``project_id:user_id`` so all
records about one user land in one partition, in order.

Topics and what they carry:

    memstream.ingest   UserCreated UserUpdated UserDeleted BlobInserted BlobDeleted FlushRequested
    memstream.flushes  BufferFlushed UserDeleted (forwarded, so the extractor forgets the user)
    memstream.memory   BlobBuffered ProfileSlotChanged EventRecorded TaskFinished

Records derived from another record get ids derived from it (``derived_id``), so processing
a record twice produces the same ids and the projections stay idempotent.
"""

import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("6f1c1a0e-3c55-4f0e-9d55-6d656d737472")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def derived_id(*parts: str) -> str:
    """A stable UUID (v5) for something identified by ``parts``."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def user_key(project_id: str, user_id: str) -> bytes:
    return f"{project_id}:{user_id}".encode()


class BlobType(StrEnum):
    chat = "chat"
    summary = "summary"
    doc = "doc"
    image = "image"
    code = "code"
    transcript = "transcript"


BUFFERED_BLOB_TYPES = frozenset({BlobType.chat})


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    role: Literal["user", "assistant"]
    content: str
    alias: str | None = None
    created_at: str | None = None


class ProfileDelta(BaseModel):
    model_config = ConfigDict(frozen=True)
    content: str
    attributes: dict[str, str]


class EventTag(BaseModel):
    model_config = ConfigDict(frozen=True)
    tag: str
    value: str


class EventData(BaseModel):
    model_config = ConfigDict(frozen=True)
    profile_delta: list[ProfileDelta] = []
    event_tip: str | None = None
    event_tags: list[EventTag] | None = None


class ChatModalResponse(BaseModel):
    """What one extraction changed, in Memobase's wire format."""

    model_config = ConfigDict(frozen=True)
    event_id: str | None = None
    add_profiles: list[str] = []
    update_profiles: list[str] = []
    delete_profiles: list[str] = []


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    v: int = SCHEMA_VERSION
    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = Field(default_factory=utc_now)
    project_id: str
    user_id: str

    @property
    def key(self) -> bytes:
        return user_key(self.project_id, self.user_id)


# --- ingest ------------------------------------------------------------------------------


class UserCreated(Record):
    kind: Literal["user_created"] = "user_created"
    data: dict[str, Any] | None = None


class UserUpdated(Record):
    kind: Literal["user_updated"] = "user_updated"
    data: dict[str, Any] | None = None


class UserDeleted(Record):
    kind: Literal["user_deleted"] = "user_deleted"


class BlobInserted(Record):
    kind: Literal["blob_inserted"] = "blob_inserted"
    blob_id: str
    task_id: str
    blob_type: BlobType
    blob_data: dict[str, Any]
    fields: dict[str, Any] | None = None
    created_at: datetime


class BlobDeleted(Record):
    kind: Literal["blob_deleted"] = "blob_deleted"
    blob_id: str


class FlushRequested(Record):
    kind: Literal["flush_requested"] = "flush_requested"
    blob_type: BlobType
    task_id: str
    reason: Literal["request", "idle"] = "request"


# --- flushes -------------------------------------------------------------------------------


class BufferedBlob(BaseModel):
    model_config = ConfigDict(frozen=True)
    blob_id: str
    task_id: str
    created_at: datetime
    messages: list[ChatMessage]


class BufferFlushed(Record):
    """A window of one user's blobs, closed by size, idle time or request."""

    kind: Literal["buffer_flushed"] = "buffer_flushed"
    flush_id: str
    blob_type: BlobType
    reason: Literal["size", "idle", "request"]
    blobs: list[BufferedBlob]
    task_ids: list[str]


# --- memory --------------------------------------------------------------------------------


class BlobBuffered(Record):
    """The buffer agent took a blob; ``flush_id`` is set when this blob closed a window."""

    kind: Literal["blob_buffered"] = "blob_buffered"
    blob_id: str
    task_id: str
    blob_type: BlobType
    flush_id: str | None = None


class ProfileSlotChanged(Record):
    kind: Literal["profile_slot_changed"] = "profile_slot_changed"
    profile_id: str
    op: Literal["add", "update", "delete"]
    topic: str
    sub_topic: str
    content: str
    source_id: str  # the flush (or manual edit) that made the change
    created_at: datetime | None = None  # when the slot was first filled; None: by this change


class EventRecorded(Record):
    kind: Literal["event_recorded"] = "event_recorded"
    user_event_id: str
    flush_id: str
    event_data: EventData


class TaskFinished(Record):
    kind: Literal["task_finished"] = "task_finished"
    flush_id: str
    blob_type: BlobType
    task_ids: list[str]
    blob_ids: list[str]
    status: Literal["completed", "failed"]
    error: str | None = None
    results: list[ChatModalResponse] = []


AnyRecord = Annotated[
    Union[
        UserCreated,
        UserUpdated,
        UserDeleted,
        BlobInserted,
        BlobDeleted,
        FlushRequested,
        BufferFlushed,
        BlobBuffered,
        ProfileSlotChanged,
        EventRecorded,
        TaskFinished,
    ],
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[AnyRecord] = TypeAdapter(AnyRecord)


def encode(record: Record) -> bytes:
    return record.model_dump_json().encode()


def decode(raw: bytes) -> AnyRecord:
    return _ADAPTER.validate_json(raw)
