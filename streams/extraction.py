"""What an extractor returns, and the interface both extractors (LLM and offline) implement."""

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from streams.profile import Profile
from streams.project_config import ProjectConfig
from streams.records import ChatMessage, EventTag


class ProfileChange(BaseModel):
    """One change to one ``topic::sub_topic`` slot. For ``update`` the content is the merged value."""

    op: Literal["add", "update", "delete"]
    topic: str = Field(min_length=1)
    sub_topic: str = Field(min_length=1)
    content: str = ""


class Usage(BaseModel):
    """LLM calls answered and the tokens they cost, as the endpoint reported them."""

    model_config = ConfigDict(frozen=True)
    model: str = ""
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            model=self.model or other.model,
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Extraction(BaseModel):
    changes: list[ProfileChange] = []
    event_tip: str = ""
    event_tags: list[EventTag] = []
    usage: Usage = Usage()


class ExtractionFailed(Exception):
    """The extractor could not produce a valid answer; the flush should be retried or dead-lettered.

    ``usage`` holds what the failed attempt still cost (a malformed answer is paid for too).
    """

    def __init__(self, message: str, usage: Usage = Usage()) -> None:
        super().__init__(message)
        self.usage = usage


class Extractor(Protocol):
    async def extract(self, chats: list[ChatMessage], profile: Profile, config: ProjectConfig) -> Extraction: ...
