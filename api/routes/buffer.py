"""Buffers: flush on request (optionally waiting for the extraction) and status per blob."""

import uuid

from aiohttp import web

from api import params
from api.deps import deps, project_of
from api.envelope import invalid, ok
from api.outcomes import task_outcome
from projections.buffer import STATUSES, blob_ids_with_status
from streams.events import FlushRequested

routes = web.RouteTableDef()


@routes.post("/api/v1/users/buffer/{user_id}/{blob_type}")
async def flush_buffer(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob_type = params.blob_type(request)
    wait = params.flag(request, "wait_process")
    timeout = params.number(request, "wait_timeout", d.settings.wait_timeout)
    record = FlushRequested(project_id=project, user_id=user_id, blob_type=blob_type, task_id=str(uuid.uuid4()))
    if not wait:
        await d.producer.send(d.settings.topic_ingest, record)
        return ok([], task_id=record.task_id)
    async with d.waiter.expect(record.task_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        results = await task_outcome(d, project, record.task_id, expected.finished, timeout)
    return ok(results, task_id=record.task_id)


@routes.get("/api/v1/users/buffer/capacity/{user_id}/{blob_type}")
async def buffer_status(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob_type = params.blob_type(request)
    status = request.query.get("status", "idle")
    if status not in STATUSES:
        raise invalid(f"status: '{status}' is not one of {', '.join(STATUSES)}")
    ids = await blob_ids_with_status(d.store, project, user_id, blob_type.value, status)
    return ok({"ids": ids})
