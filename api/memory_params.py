"""Query parameters shared by the profile and context reads (Memobase's names and encodings).

List parameters repeat (``prefer_topics=a&prefer_topics=b``; the Memobase SDK sends
``&prefer_topics=a&&prefer_topics=b``, whose empty pair is skipped); JSON parameters
(``topic_limits_json``, ``chats_str``) that do not parse are a 422 naming the field.
"""

import json
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, TypeAdapter, ValidationError

from api import params
from api.envelope import describe_validation, invalid
from api.profile_filters import ProfileFilter
from streams.events import ChatMessage

_LIMITS: TypeAdapter[dict[str, int]] = TypeAdapter(dict[str, Annotated[int, Field(ge=0, strict=True)]])
_CHATS: TypeAdapter[list[ChatMessage]] = TypeAdapter(list[ChatMessage])


def topics(request: web.Request, name: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in request.query.getall(name, []) if t.strip())


def _json_param(request: web.Request, name: str) -> Any:
    raw = request.query.get(name, "")
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid(f"{name}: malformed JSON ({exc.msg} at column {exc.colno})") from None


def _validated(adapter: TypeAdapter, value: Any, shape: type, name: str, expected: str) -> Any:
    if not isinstance(value, shape):
        raise invalid(f"{name}: expected {expected}")
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise invalid(describe_validation(exc, prefix=f"{name}.")) from None


def topic_limits(request: web.Request) -> dict[str, int]:
    """``topic_limits_json``: a JSON object of topic → most sub_topics shown (a non-negative integer)."""
    value = _json_param(request, "topic_limits_json")
    return {} if value is None else _validated(_LIMITS, value, dict, "topic_limits_json", "a JSON object of topic: count")


def chats(request: web.Request) -> list[ChatMessage]:
    """``chats_str``: the app's recent messages, a JSON list of ``{role, content}``."""
    value = _json_param(request, "chats_str")
    return [] if value is None else _validated(_CHATS, value, list, "chats_str", "a JSON list of {role, content}")


def profile_filter(request: web.Request) -> ProfileFilter:
    """The topic parameters both reads share; the caller adds ``topk``, budgets and chats."""
    return ProfileFilter(
        prefer_topics=topics(request, "prefer_topics"),
        only_topics=topics(request, "only_topics"),
        max_subtopic_size=params.integer(request, "max_subtopic_size", 0, low=1) or None,
        topic_limits=topic_limits(request),
    )
