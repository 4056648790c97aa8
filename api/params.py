"""Parsing path, query and body into typed values, with 422 errors that name the field.

- **Path**: every ``{name}`` a route may hold is declared once in ``PATH_PARAMS`` (its schema
  for the OpenAPI document and its parser); ids are UUIDs, except task ids (MemOS lets
  clients hold any string).
- **Query**: each route declares its parameters as a pydantic model (see ``api.endpoint``).
  A parameter the model documents as an array repeats (``prefer_topics=a&prefer_topics=b``;
  blank items are dropped, and the empty pair of the Memobase SDK's ``&prefer_topics=a&&…``
  names nothing); any other takes its first value, and an empty value is a value (``page=``
  is a 422, ``search=`` searches for ""). **Unknown parameters are ignored**, as Memobase's
  server (FastAPI) does: SDKs send some we do not read, and rejecting them would break those
  clients. A query string that is not UTF-8 once percent-decoded is a 422.
- **Body**: UTF-8 JSON only; NaN/Infinity, lone surrogates and nesting deeper than the JSON
  parser's limit are rejected as malformed, so nothing accepted can fail to be stored later.
"""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import pydantic_core
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.envelope import describe_validation, invalid
from streams.records import BlobType

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class PathParam:
    schema: dict[str, Any]
    parse: Callable[[str], str]  # the normalised value; ValueError when malformed
    expected: str  # what a good value is, for the 422 message


def _uuid(raw: str) -> str:
    return str(uuid.UUID(raw))


def _blob_type(raw: str) -> str:
    return BlobType(raw).value


_UUID = PathParam({"type": "string", "format": "uuid"}, _uuid, "a UUID")
_BLOB_TYPES = [t.value for t in BlobType]
PATH_PARAMS: dict[str, PathParam] = {
    "user_id": _UUID,
    "blob_id": _UUID,
    "profile_id": _UUID,
    "event_id": _UUID,
    "blob_type": PathParam(
        {"type": "string", "enum": _BLOB_TYPES}, _blob_type, f"a blob type ({', '.join(_BLOB_TYPES)})"
    ),
    "task_id": PathParam({"type": "string"}, str, "a task id"),
    "flush_id": PathParam({"type": "string"}, str, "a flush id"),
}


def path(request: web.Request, name: str) -> str:
    """The path parameter ``name``, normalised (a UUID in its canonical form); 422 naming it when malformed."""
    raw, param = request.match_info[name], PATH_PARAMS[name]
    try:
        return param.parse(raw)
    except ValueError:
        raise invalid(f"{name}: '{raw}' is not {param.expected}") from None


def check_path(request: web.Request) -> None:
    """Validate every path parameter of the matched route, so path errors come before query and body errors."""
    for name in request.match_info:
        path(request, name)


def user_id(request: web.Request) -> str:
    return path(request, "user_id")


def blob_type(request: web.Request) -> BlobType:
    return BlobType(path(request, "blob_type"))


@cache
def _repeated(model: type[BaseModel]) -> frozenset[str]:
    """The query parameters ``model`` documents as arrays, i.e. read with every value they are given."""
    properties = model.model_json_schema()["properties"]
    return frozenset(name for name, schema in properties.items() if schema.get("type") == "array")


def check_query_string(request: web.Request) -> None:
    """422 when the query string is not UTF-8 once percent-decoded (aiohttp would silently put U+FFFD)."""
    try:
        unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("query: the query string is not valid UTF-8 once percent-decoded") from None


def query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model``; parameters it does not declare are ignored."""
    repeated = _repeated(model)
    values: dict[str, Any] = {}
    for name in model.model_fields:
        given = request.query.getall(name, [])
        if name in repeated:
            values[name] = [item for item in (v.strip() for v in given) if item]
        elif given:
            values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid(describe_validation(exc)) from None


def _finite(value: Any) -> bool:
    """No float in ``value`` overflowed to infinity (``1e400`` parses as inf even when NaN literals are refused)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def parse_json(raw: bytes, field: str) -> Any:
    """Strict JSON from bytes: UTF-8, finite numbers, no lone surrogates, bounded nesting."""
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise invalid(f"{field}: malformed JSON ({exc})") from None
    if not _finite(value):
        raise invalid(f"{field}: malformed JSON (a number is out of range)")
    return value


async def body(request: web.Request, model: type[M], required: bool = True) -> M:
    """Parse the JSON body into ``model``; an empty body (no bytes at all) counts as ``{}`` unless ``required``."""
    raw = await request.read()
    if not raw:
        if required:
            raise invalid("body: a JSON object is required")
        raw = b"{}"
    data = parse_json(raw, "body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(describe_validation(exc, prefix="body.")) from None
