"""Bearer-token auth: the root token acts for the default project. Healthcheck is open."""

import hmac
from typing import Awaitable, Callable

from aiohttp import web

from api.envelope import ApiError, error_response

PROJECT = web.RequestKey("project_id", str)
OPEN_PATHS = frozenset({"/api/v1/healthcheck", "/healthcheck"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(root_token: str, default_project: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = root_token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error_response(ApiError(401, "missing token: send 'Authorization: Bearer <token>'", http_status=401))
        if not hmac.compare_digest(token.strip().encode(), expected):
            return error_response(ApiError(401, "invalid token", http_status=401))
        request[PROJECT] = default_project
        return await handler(request)

    return middleware
