"""Events: the user's timeline (Memobase ``/api/v1/users/event``)."""

from aiohttp import web

from api import params
from api.deps import deps, project_of
from api.envelope import ok
from projections.events import recent_events

routes = web.RouteTableDef()


@routes.get("/api/v1/users/event/{user_id}")
async def get_events(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    topk = params.integer(request, "topk", 10, low=1, high=1000)
    events = await recent_events(d.store, project, user_id, topk)
    return ok({"events": events})
