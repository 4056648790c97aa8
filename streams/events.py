"""The event records: the contract between ``api/``, ``streams/`` and ``projections/``.

Every record is immutable, carries ``v`` (schema version), ``event_id``, ``occurred_at``,
``project_id`` and ``user_id``, and is keyed on the wire by ``project_id:user_id`` so all
records about one user land in one partition, in order.

Topics and what they carry:

    memstream.ingest   UserCreated UserUpdated UserDeleted BlobInserted BlobDeleted FlushRequested
                       ProfileEdited EventEdited EventDeleted
    memstream.flushes  BufferFlushed, and forwarded from ingest: UserDeleted ProfileEdited EventEdited
                       (everything that changes the extractor's per-user state goes through it)
    memstream.memory   BlobBuffered ProfileSlotChanged EventRecorded TaskFinished UsageRecorded
    memstream.projects ProjectCreated ProjectConfigSet (project-level: ``user_id`` is empty, key ``project:``)

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


class ProfileEdited(Record):
    """A manual change of one slot (Memobase's profile POST/PUT/DELETE).

    ``add`` targets ``topic::sub_topic``; ``update``/``delete`` target ``profile_id``, and an
    update that names another topic/sub_topic moves the slot there.
    """

    kind: Literal["profile_edited"] = "profile_edited"
    op: Literal["add", "update", "delete"]
    profile_id: str | None = None
    topic: str = ""
    sub_topic: str = ""
    content: str = ""


class EventEdited(Record):
    """A manual rewrite of an event: ``event_data`` is the merged result, computed by the API."""

    kind: Literal["event_edited"] = "event_edited"
    user_event_id: str
    event_data: EventData
    created_at: datetime
    gist_ids: list[str] = []  # the event's current gists, retired by the rewrite


class EventDeleted(Record):
    kind: Literal["event_deleted"] = "event_deleted"
    user_event_id: str
    gist_ids: list[str] = []


class FlushRequested(Record):
    kind: Literal["flush_requested"] = "flush_requested"
    blob_type: BlobType
    task_id: str
    reason: Literal["request", "idle"] = "request"


# --- projects ------------------------------------------------------------------------------


class ProjectCreated(Record):
    """A project and the hash of its token (``sk-<project>-<secret>``); the token itself is never stored."""

    kind: Literal["project_created"] = "project_created"
    user_id: str = ""
    token_sha256: str


class ProjectConfigSet(Record):
    """A project's profile config, as the YAML text the user posted (parsed by ``streams.project_config``)."""

    kind: Literal["project_config_set"] = "project_config_set"
    user_id: str = ""
    config_yaml: str


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
    source_id: str  # the flush id, or the ``event_id`` of the ProfileEdited that made the change
    source: Literal["flush", "manual"] = "flush"
    created_at: datetime | None = None  # when the slot was first filled; None: by this change


class EventGist(BaseModel):
    """One searchable line of an event, with its embedding (None when no embedder is configured)."""

    model_config = ConfigDict(frozen=True)
    gist_id: str
    content: str
    embedding: list[float] | None = None


class EventRecorded(Record):
    """An event of the timeline, new (from a flush) or rewritten (by an ``EventEdited``).

    Embeddings travel in the record, so a replay rebuilds search without calling the endpoint.
    """

    kind: Literal["event_recorded"] = "event_recorded"
    user_event_id: str
    flush_id: str  # the flush, or the EventEdited's event_id
    event_data: EventData
    embedding: list[float] | None = None
    gists: list[EventGist] = []
    retired_gist_ids: list[str] = []  # gists of the previous version that this one drops
    created_at: datetime | None = None  # first recorded at; None: by this record


class UsageRecorded(Record):
    """LLM tokens spent on one flush (or edit), from the endpoint's ``usage``."""

    kind: Literal["usage_recorded"] = "usage_recorded"
    source_id: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int


class TaskFinished(Record):
    kind: Literal["task_finished"] = "task_finished"
    flush_id: str
    blob_type: BlobType
    task_ids: list[str]
    blob_ids: list[str]
    status: Literal["completed", "failed"]
    error: str | None = None
    results: list[ChatModalResponse] = []

    @classmethod
    def of(cls, cause: Record, flush_id: str, blob_type: BlobType, task_ids: list[str], blob_ids: list[str],
           **outcome: Any) -> "TaskFinished":
        """The end of the tasks of one flush (or of what stood for one), for ``cause``'s user; one
        id per flush, so a flush ended twice is projected once."""
        return cls(
            project_id=cause.project_id, user_id=cause.user_id, event_id=derived_id(flush_id, "finished"),
            flush_id=flush_id, blob_type=blob_type, task_ids=task_ids, blob_ids=blob_ids, **outcome,
        )


AnyRecord = Annotated[
    Union[
        UserCreated,
        UserUpdated,
        UserDeleted,
        BlobInserted,
        BlobDeleted,
        FlushRequested,
        ProfileEdited,
        EventEdited,
        EventDeleted,
        ProjectCreated,
        ProjectConfigSet,
        BufferFlushed,
        BlobBuffered,
        ProfileSlotChanged,
        EventRecorded,
        TaskFinished,
        UsageRecorded,
    ],
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[AnyRecord] = TypeAdapter(AnyRecord)


def encode(record: Record) -> bytes:
    return record.model_dump_json().encode()


def decode(raw: bytes) -> AnyRecord:
    return _ADAPTER.validate_json(raw)
