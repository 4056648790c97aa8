"""Request bodies and the answers several routes share, in Memobase's wire format (pydantic)."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator, model_validator

from api.envelope import describe_validation, invalid, too_large
from streams.limits import Limits
from streams.owner import problem_of
from streams.records import BlobInserted, BlobType, ChatMessage, Command, EventData, FlushOutcome, utc_now

# What ClickHouse's DateTime64 columns hold; a time outside would be stored as another time.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)

CommandT = TypeVar("CommandT", bound=Command)


class UserBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: dict[str, Any] | None = None
    id: Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})] | None = None

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return None if value is None else str(uuid.UUID(value))


class UserDataBody(UserBody):
    """A user's new data: ``{"data": {...}}`` (Memobase's Python and JavaScript SDKs), or the data map
    itself (its Go SDK, as Memobase's server takes it): a body whose keys are only ``data`` and
    ``id`` is unwrapped, any other is the data."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "description": "{data: {...}}, or the data map itself (a body with keys other than data and id)"
        },
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_map(cls, value: Any) -> Any:
        if isinstance(value, dict) and not set(value) <= {"data", "id"}:
            return {"data": value}
        return value


class ChatData(BaseModel):
    messages: list[ChatMessage] = Field(min_length=1)


class DocData(BaseModel):
    content: str


class SummaryData(BaseModel):
    summary: str


class CodeData(BaseModel):
    content: str
    language: str | None = None


class ImageData(BaseModel):
    url: str | None = None
    base64: str | None = None


class TranscriptStamp(BaseModel):
    content: str
    start_timestamp_in_seconds: float
    end_time_timestamp_in_seconds: float | None = None
    speaker: str | None = None


class TranscriptData(BaseModel):
    transcripts: list[TranscriptStamp]


BLOB_DATA: dict[BlobType, type[BaseModel]] = {
    BlobType.chat: ChatData,
    BlobType.doc: DocData,
    BlobType.summary: SummaryData,
    BlobType.code: CodeData,
    BlobType.image: ImageData,
    BlobType.transcript: TranscriptData,
}


class InsertBlobBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    blob_type: BlobType
    blob_data: dict[str, Any] = Field(
        description="by blob_type: chat {messages: [{role: user|assistant, content, alias?, created_at?}]}, "
        "doc {content}, summary {summary}, code {content, language?}, image {url?, base64?}, "
        "transcript {transcripts: [{content, start_timestamp_in_seconds, end_time_timestamp_in_seconds?, speaker?}]}"
    )
    fields: dict[str, Any] | None = None
    created_at: datetime | None = Field(
        None, description="when the blob happened (default: now); UTC unless it has a time zone"
    )

    @field_validator("created_at")
    @classmethod
    def _storable(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        if not EARLIEST <= value <= LATEST:
            raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        return value

    def checked_data(self) -> dict[str, Any]:
        """``blob_data`` validated against its type's shape (errors are reported under blob_data)."""
        try:
            model = BLOB_DATA[self.blob_type].model_validate(self.blob_data)
        except ValidationError as exc:
            raise invalid(describe_validation(exc, prefix="body.blob_data.")) from None
        return model.model_dump(mode="json", exclude_none=True)


def bounded(command: CommandT, limits: Limits) -> CommandT:
    """``command`` if the owner can apply it within ``limits``; else HTTP 413 naming the field and the limit."""
    problem = problem_of(command, limits)
    if problem:
        raise too_large(f"body.{problem}")
    return command


def new_blob(
    project_id: str,
    user_id: str,
    blob_type: BlobType,
    blob_data: dict[str, Any],
    fields: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> BlobInserted:
    """A blob insert with fresh blob and task ids, stamped now unless the client gave a time."""
    return BlobInserted(
        project_id=project_id,
        user_id=user_id,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type=blob_type,
        blob_data=blob_data,
        fields=fields,
        created_at=created_at or utc_now(),
    )


class WaitQuery(BaseModel):
    """``wait_process`` and ``wait_timeout``, for the calls that can wait for their task."""

    wait_process: bool = Field(False, description="answer once the processing that covers this request has finished")
    wait_timeout: float | None = Field(
        None,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds to wait (default MEMSTREAM_WAIT_TIMEOUT); past it errno 504, and the task goes on",
    )

    def timeout(self, default: float) -> float:
        return default if self.wait_timeout is None else self.wait_timeout


class ChatModalResponse(BaseModel):
    """What one extraction changed, in Memobase's wire format."""

    event_id: str | None = None
    add_profiles: list[str] = []
    update_profiles: list[str] = []
    delete_profiles: list[str] = []

    @classmethod
    def of(cls, outcome: FlushOutcome) -> "ChatModalResponse":
        return cls(
            event_id=outcome.event_id,
            add_profiles=outcome.added,
            update_profiles=outcome.updated,
            delete_profiles=outcome.deleted,
        )


class Id(BaseModel):
    id: str


class Ids(BaseModel):
    ids: list[str]


class Accepted(BaseModel):
    """An insert the broker has: its id and task; ``chat_results`` only with ``wait_process=true``."""

    id: str
    task_id: str
    chat_results: list[ChatModalResponse] | None = None


class Event(BaseModel):
    id: str
    event_data: EventData
    created_at: datetime
    updated_at: datetime


class EventList(BaseModel):
    events: list[Event]
