"""Profiles: the user's slots (Memobase ``/api/v1/users/profile``)."""

from aiohttp import web

from api import params
from api.deps import deps, project_of
from api.envelope import ok
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
