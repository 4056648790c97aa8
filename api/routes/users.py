"""Users: create, read, update, delete (Memobase ``/api/v1/users``). Each write returns once the
read models show it; each read shows every write made before it."""

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.deps import Deps, project_of, settled, write_readable
from api.endpoint import endpoint
from api.envelope import ApiError, not_found, ok
from api.models import Id, UserBody, UserDataBody, bounded
from projections.users import get_user
from streams.records import UserCreated, UserDeleted, UserUpdated

routes = web.RouteTableDef()


class User(BaseModel):
    id: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@routes.post("/api/v1/users")
@endpoint("Create a user (errno 409 when the id is taken)", body=UserBody, body_required=False, data=Id)
async def create_user(request: web.Request, body: UserBody) -> web.Response:
    project = project_of(request)
    user_id = body.id or str(uuid.uuid4())
    d = await settled(request, user_id)
    if await get_user(d.store, project, user_id) is not None:
        raise ApiError(409, f"user {user_id} already exists")
    record = bounded(UserCreated(project_id=project, user_id=user_id, data=body.data), d.settings.limits())
    await write_readable(d, record, f"user {user_id}")
    return ok({"id": user_id})


@routes.get("/api/v1/users/{user_id}")
@endpoint("Read a user", data=User)
async def read_user(request: web.Request) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    user = await get_user(d.store, project, user_id)
    if user is None:
        raise not_found(f"user {user_id}")
    return ok(user)


@routes.put("/api/v1/users/{user_id}")
@endpoint("Replace a user's data", body=UserDataBody, body_required=False, data=Id)
async def update_user(request: web.Request, body: UserDataBody) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    record = bounded(UserUpdated(project_id=project, user_id=user_id, data=body.data), d.settings.limits())
    await write_readable(d, record, f"the update of user {user_id}")
    return ok({"id": user_id})


@routes.delete("/api/v1/users/{user_id}")
@endpoint("Delete a user and everything about them (errno 404 when there is no such user)")
async def delete_user(request: web.Request) -> web.Response:
    """Always sent (the user may be in the log and not yet readable); returns once they are gone."""
    project, user_id = project_of(request), params.user_id(request)
    if not await forget_user(await settled(request, user_id), project, user_id):
        raise not_found(f"user {user_id}")
    return ok()


async def forget_user(d: Deps, project: str, user_id: str) -> bool:
    """Delete the user and everything about them (``d`` settled for the user); returns once they
    are gone, True when the users table had them."""
    existed = await get_user(d.store, project, user_id) is not None
    await write_readable(d, UserDeleted(project_id=project, user_id=user_id), f"the delete of user {user_id}")
    return existed
