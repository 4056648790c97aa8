"""Memobase's response envelope and the error convention the SDKs depend on.

- success: HTTP 200 ``{"data": …, "errno": 0, "errmsg": ""}``
- domain errors (not found, conflict, bad value, timeout, failed task): HTTP 200 with ``errno``
  set — Memobase's SDK raises on ``errno`` and ``get_or_create_user`` relies on exactly that
- missing/wrong token: HTTP 401; unparsable body or query: HTTP 422 naming the field
- broker or ClickHouse unreachable: HTTP 503; anything unexpected: HTTP 500, no stack trace

Under ``MEMOS_PREFIX`` (MemOS's product API) the same errors, at the same HTTP statuses, come in
MemOS's envelope instead: ``{"code": 0, "data": …, "message": "ok"}`` on success, ``code`` = the
errno above and ``message`` = the errmsg on an error.
"""

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from projections.store import StoreUnavailable

log = logging.getLogger(__name__)
MEMOS_PREFIX = "/api/openmem/v1/"


class ApiError(Exception):
    def __init__(self, errno: int, errmsg: str, http_status: int = 200, **extra: Any) -> None:
        super().__init__(errmsg)
        self.errno, self.errmsg, self.http_status, self.extra = errno, errmsg, http_status, extra


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def invalid(errmsg: str) -> ApiError:
    return ApiError(422, errmsg, http_status=422)


def too_large(errmsg: str) -> ApiError:
    return ApiError(413, errmsg, http_status=413)


def unavailable(errmsg: str) -> ApiError:
    return ApiError(503, errmsg, http_status=503)


def utc(at: datetime) -> datetime:
    """A time as an aware UTC time: ClickHouse hands back naive UTC times."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    """JSON as every answer is written (times in ISO 8601, UTF-8 as is)."""
    return json.dumps(value, default=_default, ensure_ascii=False)


def ok(data: Any = None, **extra: Any) -> web.Response:
    return web.json_response({"data": data, "errno": 0, "errmsg": "", **extra}, dumps=dumps)


def ok_encoded(data_json: str) -> web.Response:
    """``ok(data)`` for ``data`` already encoded by ``dumps`` (an answer kept in the read cache)."""
    return web.Response(text=f'{{"data": {data_json}, "errno": 0, "errmsg": ""}}', content_type="application/json")


def error_response(exc: ApiError) -> web.Response:
    body = {"data": None, "errno": exc.errno, "errmsg": exc.errmsg, **exc.extra}
    return web.json_response(body, status=exc.http_status, dumps=dumps)


def memos_ok(data: Any) -> web.Response:
    """Success in MemOS's envelope."""
    return web.json_response({"code": 0, "data": data, "message": "ok"}, dumps=dumps)


def memos_error_response(exc: ApiError) -> web.Response:
    body = {"code": exc.errno, "data": None, "message": exc.errmsg, **exc.extra}
    return web.json_response(body, status=exc.http_status, dumps=dumps)


def describe_validation(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{prefix}{field}: {err['msg']}")
    return "; ".join(parts)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    render = memos_error_response if request.path.startswith(MEMOS_PREFIX) else error_response
    try:
        return await handler(request)
    except ApiError as exc:
        return render(exc)
    except ValidationError as exc:
        return render(invalid(describe_validation(exc)))
    except StoreUnavailable as exc:
        log.warning("ClickHouse unavailable: %s", exc)
        return render(unavailable("storage is unavailable, try again shortly"))
    except web.HTTPRequestEntityTooLarge as exc:
        return render(ApiError(413, f"body: too large ({exc.text})", http_status=413))
    except web.RequestPayloadError:
        response = render(invalid("body: cannot be read as sent (does it match its Content-Encoding?)"))
        response.force_close()  # what is left of the body cannot be read either: end the connection after answering
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return render(ApiError(exc.status, exc.reason, http_status=exc.status))
    except Exception:  # noqa: BLE001 - last resort: log it, never leak a stack trace
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s on %s %s", incident, request.method, request.path)
        return render(ApiError(500, f"internal error (incident {incident})", http_status=500))
