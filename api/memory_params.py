"""Query parameters shared by the profile and context reads (Memobase's names and encodings).

List parameters repeat (``prefer_topics=a&prefer_topics=b``; the Memobase SDK sends
``&prefer_topics=a&&prefer_topics=b``, whose empty pair is skipped); JSON parameters
(``topic_limits_json`` or ``topic_limits``, ``chats_str``) that do not parse or do not fit are a 422 naming the field.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Json

from api.profile_filters import ProfileFilter
from streams.records import ChatMessage

MAX_COUNT = 1_000_000  # bound of the counts and token budgets a read accepts
Count = Annotated[int, Field(ge=0, strict=True)]


class TopicsQuery(BaseModel):
    """The topic parameters both reads share."""

    model_config = ConfigDict(allow_inf_nan=False)
    prefer_topics: list[str] = Field([], description="topics to put first, in this order")
    only_topics: list[str] = Field([], description="show only these topics")
    max_subtopic_size: int | None = Field(None, ge=1, le=MAX_COUNT, description="most sub_topics shown per topic")
    topic_limits_json: Json[dict[str, Count]] | None = Field(
        None, description="JSON object: topic → most sub_topics shown (overrides max_subtopic_size)"
    )
    topic_limits: Json[dict[str, Count]] | None = Field(
        None, description="the same, under the name Memobase's JavaScript SDK sends (topic_limits_json wins)"
    )
    chats_str: Json[list[ChatMessage]] | None = Field(
        None, description="JSON list of the app's recent {role, content} messages"
    )

    def profile_filter(self) -> ProfileFilter:
        """The slot filter these parameters ask for; the caller adds ``topk``, budgets and chats."""
        return ProfileFilter(
            prefer_topics=tuple(self.prefer_topics),
            only_topics=tuple(self.only_topics),
            max_subtopic_size=self.max_subtopic_size,
            topic_limits=self.topic_limits_json or self.topic_limits or {},
        )

    def chats(self) -> list[ChatMessage]:
        return self.chats_str or []
