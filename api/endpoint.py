"""Declaring a route: the query and body it reads and the ``data`` it answers.

    @routes.get("/api/v1/users/event/{user_id}")
    @endpoint("The user's events, newest first", query=EventsQuery, data=EventList)
    async def get_events(request: web.Request, query: EventsQuery) -> web.Response: ...

The declaration is both the parser and the documentation. The wrapper validates the path
parameters (``api.params.PATH_PARAMS``), then the query string (UTF-8) and parses it into
``query``, then the body into ``body`` — so errors come in that order — and passes the
parsed models to the handler as keyword arguments. ``api.openapi`` builds the OpenAPI
document from the same declarations, so what is documented is what is read.
"""

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.auth import ROOT
from api.envelope import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SPEC = "__endpoint__"


@dataclass(frozen=True)
class Endpoint:
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True  # False: an empty body counts as {}
    data: Any = None  # the type of ``data`` on success (None: null)
    envelope: bool = True  # False: the answer is ``data`` itself (only the OpenAPI document)
    root_only: bool = False  # answered 403 unless the token is the root token
    memos: bool = False  # the answer is MemOS's envelope {code, data, message} (routes under MEMOS_PREFIX)


def endpoint(
    summary: str,
    *,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    data: Any = None,
    envelope: bool = True,
    root_only: bool = False,
    memos: bool = False,
) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Handler]:
    spec = Endpoint(summary, query, body, body_required, data, envelope, root_only, memos)

    def wrap(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Handler:
        @functools.wraps(handler)
        async def parsed(request: web.Request) -> web.StreamResponse:
            if spec.root_only and not request[ROOT]:
                raise ApiError(403, "this call needs the root token", http_status=403)
            params.check_path(request)
            params.check_query_string(request)
            kwargs: dict[str, BaseModel] = {}
            if spec.query is not None:
                kwargs["query"] = params.query(request, spec.query)
            if spec.body is not None:
                kwargs["body"] = await params.body(request, spec.body, spec.body_required)
            return await handler(request, **kwargs)

        setattr(parsed, _SPEC, spec)
        return parsed

    return wrap


def spec_of(handler: Any) -> Endpoint | None:
    """The declaration of a route's handler, or None when it has none."""
    return getattr(handler, _SPEC, None)
