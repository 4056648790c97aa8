"""Request bodies in Memobase's wire format, validated with pydantic."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.envelope import describe_validation, invalid
from streams.events import BlobInserted, BlobType, ChatMessage, utc_now


class UserBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    data: dict[str, Any] | None = None
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return None if value is None else str(uuid.UUID(value))


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
    blob_data: dict[str, Any]
    fields: dict[str, Any] | None = None
    created_at: datetime | None = None

    def checked_data(self) -> dict[str, Any]:
        """``blob_data`` validated against its type's shape (errors are reported under blob_data)."""
        try:
            model = BLOB_DATA[self.blob_type].model_validate(self.blob_data)
        except ValidationError as exc:
            raise invalid(describe_validation(exc, prefix="body.blob_data.")) from None
        return model.model_dump(mode="json", exclude_none=True)


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
