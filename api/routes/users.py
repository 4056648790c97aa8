"""Users: create, read, update, delete (Memobase ``/api/v1/users``)."""

import uuid

from aiohttp import web

from api import params
from api.deps import deps, project_of, until_visible
from api.envelope import ApiError, not_found, ok
from api.models import UserBody
from projections.users import get_user
from streams.events import UserCreated, UserDeleted, UserUpdated

routes = web.RouteTableDef()


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    d, project = deps(request), project_of(request)
    payload = await params.body(request, UserBody, required=False)
    user_id = payload.id or str(uuid.uuid4())
    if await get_user(d.store, project, user_id) is not None:
        raise ApiError(409, f"user {user_id} already exists")
    await d.producer.send(d.settings.topic_ingest, UserCreated(project_id=project, user_id=user_id, data=payload.data))

    async def visible() -> bool:
        return await get_user(d.store, project, user_id) is not None

    await until_visible(visible, d.settings.read_your_writes_timeout)
    return ok({"id": user_id})


@routes.get("/api/v1/users/{user_id}")
async def read_user(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    user = await get_user(d.store, project, user_id)
    if user is None:
        raise not_found(f"user {user_id}")
    return ok(user)


@routes.put("/api/v1/users/{user_id}")
async def update_user(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    payload = await params.body(request, UserBody, required=False)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    record = UserUpdated(project_id=project, user_id=user_id, data=payload.data)
    await d.producer.send(d.settings.topic_ingest, record)

    async def visible() -> bool:
        user = await get_user(d.store, project, user_id)
        return user is not None and user["data"] == (record.data or {})

    await until_visible(visible, d.settings.read_your_writes_timeout)
    return ok({"id": user_id})


@routes.delete("/api/v1/users/{user_id}")
async def delete_user(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    await d.producer.send(d.settings.topic_ingest, UserDeleted(project_id=project, user_id=user_id))

    async def gone() -> bool:
        return await get_user(d.store, project, user_id) is None

    await until_visible(gone, d.settings.read_your_writes_timeout)
    return ok()
