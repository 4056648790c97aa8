"""Parsing path and query parameters into typed values, with 422 errors that name the field."""

import json
import uuid
from typing import Any, Callable, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.envelope import describe_validation, invalid
from streams.events import BlobType

M = TypeVar("M", bound=BaseModel)
N = TypeVar("N", int, float)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def user_id(request: web.Request) -> str:
    return uuid_param(request, "user_id")


def uuid_param(request: web.Request, name: str) -> str:
    raw = request.match_info[name]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise invalid(f"{name}: '{raw}' is not a UUID") from None


def blob_type(request: web.Request) -> BlobType:
    raw = request.match_info["blob_type"]
    try:
        return BlobType(raw)
    except ValueError:
        allowed = ", ".join(t.value for t in BlobType)
        raise invalid(f"blob_type: unknown blob type '{raw}' (one of: {allowed})") from None


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise invalid(f"{name}: '{raw}' is not a boolean (true/false)")


def integer(request: web.Request, name: str, default: int, low: int = 0, high: int = 1_000_000) -> int:
    return _bounded(request, name, default, low, high, int, "an integer")


def number(request: web.Request, name: str, default: float, low: float = 0.0, high: float = 3600.0) -> float:
    return _bounded(request, name, default, low, high, float, "a number")


def _bounded(request: web.Request, name: str, default: N, low: N, high: N, cast: Callable[[str], N], kind: str) -> N:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise invalid(f"{name}: '{raw}' is not {kind}") from None
    if not low <= value <= high:
        raise invalid(f"{name}: {value:g} is outside {low:g}..{high:g}")
    return value


async def body(request: web.Request, model: type[M], required: bool = True) -> M:
    """Parse the JSON body into ``model``; an empty body counts as ``{}`` unless ``required``."""
    text = await request.text()
    if not text.strip():
        if required:
            raise invalid("body: a JSON object is required")
        text = "{}"
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"body: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(describe_validation(exc, prefix="body.")) from None
