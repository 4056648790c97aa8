"""Users: create, read, update, delete (Memobase ``/api/v1/users``)."""

import uuid
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.deps import deps, project_of, until_visible
from api.endpoint import endpoint
from api.envelope import ApiError, not_found, ok
from api.models import Id, UserBody
from projections.users import get_user
from streams.events import UserCreated, UserDeleted, UserUpdated

routes = web.RouteTableDef()


class User(BaseModel):
    id: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@routes.post("/api/v1/users")
@endpoint("Create a user (errno 409 when the id is taken)", body=UserBody, body_required=False, data=Id)
async def create_user(request: web.Request, body: UserBody) -> web.Response:
    d, project = deps(request), project_of(request)
    user_id = body.id or str(uuid.uuid4())
    if await get_user(d.store, project, user_id) is not None:
        raise ApiError(409, f"user {user_id} already exists")
    await d.producer.send(d.settings.topic_ingest, UserCreated(project_id=project, user_id=user_id, data=body.data))

    async def visible() -> bool:
        return await get_user(d.store, project, user_id) is not None

    await until_visible(visible, d.settings.read_your_writes_timeout)
    return ok({"id": user_id})


@routes.get("/api/v1/users/{user_id}")
@endpoint("Read a user", data=User)
async def read_user(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    user = await get_user(d.store, project, user_id)
    if user is None:
        raise not_found(f"user {user_id}")
    return ok(user)


@routes.put("/api/v1/users/{user_id}")
@endpoint("Replace a user's data", body=UserBody, body_required=False, data=Id)
async def update_user(request: web.Request, body: UserBody) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    record = UserUpdated(project_id=project, user_id=user_id, data=body.data)
    await d.producer.send(d.settings.topic_ingest, record)

    async def visible() -> bool:
        user = await get_user(d.store, project, user_id)
        return user is not None and user["data"] == (record.data or {})

    await until_visible(visible, d.settings.read_your_writes_timeout)
    return ok({"id": user_id})


@routes.delete("/api/v1/users/{user_id}")
@endpoint("Delete a user and everything about them")
async def delete_user(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    await d.producer.send(d.settings.topic_ingest, UserDeleted(project_id=project, user_id=user_id))

    async def gone() -> bool:
        return await get_user(d.store, project, user_id) is None

    await until_visible(gone, d.settings.read_your_writes_timeout)
    return ok()
