"""Context: the memory block an app puts into its prompt (Memobase ``/api/v1/users/context``)."""

from aiohttp import web

from api import params
from api.context import build_context
from api.deps import deps, project_of
from api.envelope import ok
from projections.events import recent_events
from projections.profiles import list_profiles

routes = web.RouteTableDef()


@routes.get("/api/v1/users/context/{user_id}")
async def get_context(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    max_tokens = params.integer(request, "max_token_size", 1000, low=1, high=1_000_000)
    profiles = await list_profiles(d.store, project, user_id)
    events = await recent_events(d.store, project, user_id, 50)
    return ok({"context": build_context(profiles, events, max_tokens)})
