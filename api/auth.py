"""Bearer-token auth (``Authorization: Bearer <token>``; under MemOS's prefix also ``Token <token>``,
as MemOS clients send it). The root token acts for the default project; a project token
``sk-<project>-<secret>`` acts for its project, checked against the SHA-256 the project
directory holds. Every handler reads the project from the request, never from input, so one
project cannot name another's data. Healthcheck, the OpenAPI document and the inspector's files
(which hold no data; the page calls the API with a token) are open."""

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from api import inspector
from api.envelope import MEMOS_PREFIX, ApiError
from streams.project_tokens import project_of_token, token_sha256
from streams.projects import ProjectDirectory

PROJECT = web.RequestKey("project_id", str)
ROOT = web.RequestKey("root", bool)  # the request carries the root token
OPEN_PATHS = frozenset({"/api/v1/healthcheck", "/api/v1/openapi.json"})


def auth_middleware(root_token: str, default_project: str, directory: ProjectDirectory) -> Middleware:
    expected_root = root_token.encode()

    async def project_for(token: str) -> str | None:
        if hmac.compare_digest(token.encode(), expected_root):
            return default_project
        project = project_of_token(token)
        if project is None:
            return None
        digest = token_sha256(token)
        if not directory.token_matches(project, digest):
            await directory.catch_up()  # a project created a moment ago may not be read yet
        return project if directory.token_matches(project, digest) else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource  # by the route matched, so no spelling of a path can pass
        if request.path in OPEN_PATHS or (resource is not None and inspector.is_page(resource.canonical)):
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        memos = request.path.startswith(MEMOS_PREFIX)
        if scheme.lower() not in (("bearer", "token") if memos else ("bearer",)) or not token.strip():
            wanted = "Token <token>" if memos else "Bearer <token>"
            raise ApiError(401, f"missing token: send 'Authorization: {wanted}'", http_status=401)
        project = await project_for(token.strip())
        if project is None:
            raise ApiError(401, "invalid token", http_status=401)
        request[PROJECT] = project
        request[ROOT] = hmac.compare_digest(token.strip().encode(), expected_root)
        return await handler(request)

    return middleware
