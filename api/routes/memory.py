"""What Memstream remembers about a user: profile, events, and the prompt context."""

from aiohttp import web

from api import params
from api.context import build_context
from api.deps import deps, project_of
from api.envelope import ok
from projections.events import recent_events
from projections.profiles import list_profiles

routes = web.RouteTableDef()


def profile_json(row: dict) -> dict:
    return {
        "id": row["id"],
        "content": row["content"],
        "attributes": {"topic": row["topic"], "sub_topic": row["sub_topic"]},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@routes.get("/api/v1/users/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    rows = await list_profiles(d.store, project, user_id)
    return ok({"profiles": [profile_json(r) for r in rows]})


@routes.get("/api/v1/users/event/{user_id}")
async def get_events(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    topk = params.integer(request, "topk", 10, low=1, high=1000)
    events = await recent_events(d.store, project, user_id, topk)
    return ok({"events": events})


@routes.get("/api/v1/users/context/{user_id}")
async def get_context(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    max_tokens = params.integer(request, "max_token_size", 1000, low=1, high=1_000_000)
    profiles = await list_profiles(d.store, project, user_id)
    events = await recent_events(d.store, project, user_id, 50)
    return ok({"context": build_context(profiles, events, max_tokens)})
