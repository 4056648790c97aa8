"""The log records: the contract between ``api/``, ``streams/`` and ``projections/``, and with
producers that publish to the ingest topic directly.

"Record" means an entry of the log; "event" means only a timeline event of a user (``event_id``).

Every record is immutable, carries ``v`` (schema version), ``record_id``, ``occurred_at``,
``project_id`` and ``user_id``, and is keyed on the wire by ``project_id:user_id`` so every record
about one user lands in one partition, in order. Each topic carries its own union:

    memstream.ingest     commands, from the API or any producer:
                         UserCreated UserUpdated UserDeleted BlobInserted BlobDeleted FlushRequested
                         ProfileEdited EventEdited EventDeleted FlushReplayed
    memstream.memory     facts, written only by the owner (``streams.owner``), in each user's order,
                         each with the user's ``seq`` (the version of the rows it projects to):
                         UserStored UserForgotten BlobStored BlobDropped BufferClosed
                         ProfileSlotChanged EventRecorded EventDropped UsageRecorded EditApplied
                         TaskFinished; and the owner's OwnerProgress markers
    memstream.projects   project-level records (``user_id`` is empty, key ``project:``):
                         ProjectCreated ProjectConfigSet

Readers are tolerant: a field they do not know is ignored (a newer producer in a rolling deploy),
and a record at an older ``v`` is upcast (``UPCASTERS``) before it is validated.
"""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 2
_NAMESPACE = uuid.UUID("6f1c1a0e-3c55-4f0e-9d55-6d656d737472")


def utc_now() -> datetime:
    return datetime.now(UTC)


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


class Content(BaseModel):
    """A value inside a record: immutable, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ChatMessage(Content):
    role: Literal["user", "assistant"]
    content: str
    alias: str | None = None
    created_at: str | None = None


class ProfileDelta(Content):
    content: str
    attributes: dict[str, str]


class EventTag(Content):
    tag: str
    value: str


class EventData(Content):
    """What a timeline event says (returned by the API as Memobase's ``event_data``)."""

    profile_delta: list[ProfileDelta] = []
    event_tip: str | None = None
    event_tags: list[EventTag] | None = None


class FlushOutcome(Content):
    """What one extraction changed: the event it recorded and the slots it added, updated, deleted."""

    event_id: str | None = None
    added: list[str] = []
    updated: list[str] = []
    deleted: list[str] = []


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    v: int = SCHEMA_VERSION
    record_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = Field(default_factory=utc_now)
    project_id: str
    user_id: str

    @property
    def key(self) -> bytes:
        return user_key(self.project_id, self.user_id)


# --- memstream.ingest: commands ----------------------------------------------------------------


class UserCreated(Record):
    kind: Literal["user_created"] = "user_created"
    data: dict[str, Any] | None = None


class UserUpdated(Record):
    kind: Literal["user_updated"] = "user_updated"
    data: dict[str, Any] | None = None


class UserDeleted(Record):
    kind: Literal["user_deleted"] = "user_deleted"


class InsertedBlob(BaseModel):
    """A blob as its producer inserted it (asked for by the command, repeated by the fact)."""

    blob_id: str
    task_id: str
    blob_type: BlobType
    blob_data: dict[str, Any]
    fields: dict[str, Any] | None = None
    created_at: datetime


class BlobInserted(Record, InsertedBlob):
    kind: Literal["blob_inserted"] = "blob_inserted"


class BlobDeleted(Record):
    kind: Literal["blob_deleted"] = "blob_deleted"
    blob_id: str


class FlushRequested(Record):
    kind: Literal["flush_requested"] = "flush_requested"
    blob_type: BlobType
    task_id: str


class ProfileEdited(Record):
    """A manual change of one slot (Memobase's profile POST/PUT/DELETE).

    ``add`` targets ``topic::sub_topic``; ``update``/``delete`` target ``profile_id``, and an
    update that names another topic/sub_topic moves the slot there (keeping its id).
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
    event_id: str
    event_data: EventData
    created_at: datetime
    gist_ids: list[str] = []  # the event's current gists, retired by the rewrite


class EventDeleted(Record):
    kind: Literal["event_deleted"] = "event_deleted"
    event_id: str
    gist_ids: list[str] = []


class BufferedBlob(Content):
    blob_id: str
    task_id: str
    created_at: datetime
    messages: list[ChatMessage]


FlushReason = Literal["size", "idle", "request"]


class ClosedWindow(BaseModel):
    """What names a closed window of one user's blobs: the flush, why it closed, the tasks it ends."""

    flush_id: str
    blob_type: BlobType
    reason: FlushReason
    task_ids: list[str]


class BufferFlushed(Record, ClosedWindow):
    """A closed window with its blobs (by size, idle time or request), waiting for or under
    extraction in the owner's state, and parked as a dead letter when its extraction fails for good."""

    kind: Literal["buffer_flushed"] = "buffer_flushed"
    blobs: list[BufferedBlob]


class FlushReplayed(Record):
    """A parked flush sent back for extraction (``memstream replay-dead-letters``)."""

    kind: Literal["flush_replayed"] = "flush_replayed"
    flush: BufferFlushed


# --- memstream.memory: facts --------------------------------------------------------------------


class Fact(Record):
    """A fact the owner states about a user; ``seq`` orders the user's facts (the rows' version)."""

    seq: int


class UserStored(Fact):
    kind: Literal["user_stored"] = "user_stored"
    data: dict[str, Any]
    created_at: datetime


class UserForgotten(Fact):
    """The user and everything about them are gone: every row stated before this one is erased."""

    kind: Literal["user_forgotten"] = "user_forgotten"


class BlobStored(Fact, InsertedBlob):
    """The owner took a blob; ``flush_id`` is set when this blob closed a window."""

    kind: Literal["blob_stored"] = "blob_stored"
    flush_id: str | None = None


class BlobDropped(Fact):
    kind: Literal["blob_dropped"] = "blob_dropped"
    blob_id: str


class BufferClosed(Fact, ClosedWindow):
    """A window closed: its blobs are ``processing`` and its tasks ``running`` until ``TaskFinished``."""

    kind: Literal["buffer_closed"] = "buffer_closed"
    blob_ids: list[str]


class ProfileSlotChanged(Fact):
    kind: Literal["profile_slot_changed"] = "profile_slot_changed"
    profile_id: str
    op: Literal["add", "update", "delete"]
    topic: str
    sub_topic: str
    content: str
    source_id: str  # the flush id, or the ``record_id`` of the ProfileEdited that made the change
    source: Literal["flush", "manual"] = "flush"
    created_at: datetime | None = None  # when the slot was first filled; None: by this change


class EventGist(Content):
    """One searchable line of an event, with its embedding (None when no embedder is configured)."""

    gist_id: str
    content: str
    embedding: list[float] | None = None


class EventRecorded(Fact):
    """A timeline event, new (from a flush) or rewritten (by an ``EventEdited``).

    Embeddings travel in the record, so a rebuild restores search without calling the endpoint.
    """

    kind: Literal["event_recorded"] = "event_recorded"
    event_id: str
    flush_id: str  # the flush, or the EventEdited's record_id
    event_data: EventData
    embedding: list[float] | None = None
    gists: list[EventGist] = []
    retired_gist_ids: list[str] = []  # gists of the previous version that this one drops
    created_at: datetime | None = None  # first recorded at; None: by this record


class EventDropped(Fact):
    kind: Literal["event_dropped"] = "event_dropped"
    event_id: str
    gist_ids: list[str] = []


class UsageRecorded(Fact):
    """LLM tokens spent on one flush, from the endpoint's ``usage``."""

    kind: Literal["usage_recorded"] = "usage_recorded"
    source_id: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int


class EditApplied(Fact):
    """A queued edit (profile, event) has been applied, found nothing to change (``ignored``), or
    could not be done (``failed``: its embedding failed for good), with the reason; ``profile_ids``
    are the slots it left live."""

    kind: Literal["edit_applied"] = "edit_applied"
    edit_id: str
    outcome: Literal["applied", "ignored", "failed"]
    reason: str = ""
    profile_ids: list[str] = []


class OwnerProgress(Record):
    """Written by the owner at the end of each transaction, to the memory partition of the ingest
    partition it handled: every command of that ingest partition below ``ingest_offset`` has been
    applied, and the facts it stated at once are before this record. (Not about a user: the ids
    are empty.)"""

    kind: Literal["owner_progress"] = "owner_progress"
    project_id: str = ""
    user_id: str = ""
    ingest_offset: int


class TaskFinished(Fact):
    kind: Literal["task_finished"] = "task_finished"
    flush_id: str
    blob_type: BlobType
    task_ids: list[str]
    blob_ids: list[str]
    status: Literal["completed", "failed"]
    error: str | None = None
    outcomes: list[FlushOutcome] = []


# --- memstream.projects ---------------------------------------------------------------------------


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


Command = Annotated[
    UserCreated
    | UserUpdated
    | UserDeleted
    | BlobInserted
    | BlobDeleted
    | FlushRequested
    | ProfileEdited
    | EventEdited
    | EventDeleted
    | FlushReplayed,
    Field(discriminator="kind"),
]
MemoryFact = Annotated[
    UserStored
    | UserForgotten
    | BlobStored
    | BlobDropped
    | BufferClosed
    | ProfileSlotChanged
    | EventRecorded
    | EventDropped
    | UsageRecorded
    | EditApplied
    | TaskFinished
    | OwnerProgress,
    Field(discriminator="kind"),
]
ProjectRecord = Annotated[ProjectCreated | ProjectConfigSet, Field(discriminator="kind")]


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 named a record's id ``event_id`` and a timeline event's id ``user_event_id``."""
    upcast = {k: v for k, v in raw.items() if k not in ("event_id", "user_event_id")}
    if "event_id" in raw:
        upcast["record_id"] = raw["event_id"]
    if "user_event_id" in raw:
        upcast["event_id"] = raw["user_event_id"]
    return {**upcast, "v": 2}


# From each older version to the next; ``decode`` applies them in turn.
UPCASTERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


class Undecodable(ValueError):
    """The bytes are not a record this topic may carry; the message says why."""


class Codec:
    """Reading one topic's records: JSON, upcast to the current version, validated as its union."""

    def __init__(self, union: Any, topic: str) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(union)
        self.topic = topic

    def decode(self, raw: bytes | None) -> Any:
        if raw is None:
            raise Undecodable(f"a record on {self.topic} has no value")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise Undecodable(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise Undecodable("not a JSON object")
        version = data.get("v", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
            raise Undecodable(f"schema version {version!r} is not one this reader knows (1..{SCHEMA_VERSION})")
        while version < SCHEMA_VERSION:
            data = UPCASTERS[version](data)
            version += 1
        try:
            return self._adapter.validate_python(data)
        except ValueError as exc:
            raise Undecodable(f"not a record {self.topic} carries: {str(exc).splitlines()[0]}") from None


COMMANDS = Codec(Command, "the ingest topic")
FACTS = Codec(MemoryFact, "the memory topic")
PROJECT_RECORDS = Codec(ProjectRecord, "the projects topic")
FLUSHES = Codec(BufferFlushed, "a parked flush")


def encode(record: BaseModel) -> bytes:
    return record.model_dump_json().encode()
