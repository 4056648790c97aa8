"""Health: cheap, open, and true — 503 with the reasons when a part of this process has stopped
or keeps failing (the owner stage, the projection writer)."""

from aiohttp import web

from api.deps import deps
from api.endpoint import endpoint
from api.envelope import ApiError, ok

routes = web.RouteTableDef()


@routes.get("/api/v1/healthcheck")
@endpoint("Health (no token needed): errno 0, or HTTP 503 with the reasons")
async def healthcheck(request: web.Request) -> web.Response:
    problems = deps(request).health()
    if problems:
        raise ApiError(503, "; ".join(problems), http_status=503)
    return ok()
