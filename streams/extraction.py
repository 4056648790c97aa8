"""What an extractor returns, and the interface both extractors (LLM and offline) implement."""

from typing import Literal, Protocol

from pydantic import BaseModel, Field

from streams.events import ChatMessage, EventTag
from streams.profile import Profile


class ProfileChange(BaseModel):
    """One change to one ``topic::sub_topic`` slot. For ``update`` the content is the merged value."""

    op: Literal["add", "update", "delete"]
    topic: str = Field(min_length=1)
    sub_topic: str = Field(min_length=1)
    content: str = ""


class Extraction(BaseModel):
    changes: list[ProfileChange] = []
    event_tip: str = ""
    event_tags: list[EventTag] = []


class ExtractionFailed(Exception):
    """The extractor could not produce a valid answer; the flush should be retried or dead-lettered."""


class Extractor(Protocol):
    name: str

    async def extract(self, chats: list[ChatMessage], profile: Profile) -> Extraction: ...
