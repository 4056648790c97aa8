"""Buffers: flush on request (optionally waiting for the extraction) and status per blob."""

import uuid
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.deps import Deps, deps, project_of, settled
from api.endpoint import endpoint
from api.envelope import ok
from api.models import ChatModalResponse, Ids, WaitQuery
from api.outcomes import task_outcome
from projections.buffer import STATUSES, blob_ids_with_status
from streams.records import BlobType, FlushRequested

routes = web.RouteTableDef()


class BufferStatusQuery(BaseModel):
    status: Literal[STATUSES] = "idle"  # type: ignore[valid-type]  # Literal of the tuple's values


@routes.post("/api/v1/users/buffer/{user_id}/{blob_type}")
@endpoint(
    "Flush the user's buffer; the envelope carries the flush's task_id", query=WaitQuery, data=list[ChatModalResponse]
)
async def flush_buffer(request: web.Request, query: WaitQuery) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    record = flush_of(project, user_id, params.blob_type(request))
    if not query.wait_process:
        await d.producer.send(d.settings.topic_ingest, record)
        return ok([], task_id=record.task_id)
    results = await flush_processed(d, record, query.timeout(d.settings.wait_timeout))
    return ok(results, task_id=record.task_id)


def flush_of(project: str, user_id: str, blob_type: BlobType) -> FlushRequested:
    return FlushRequested(project_id=project, user_id=user_id, blob_type=blob_type, task_id=str(uuid.uuid4()))


async def flush_processed(d: Deps, record: FlushRequested, timeout: float) -> list[dict]:
    """Send the flush and return its extraction's results once a read shows them."""
    async with d.waiter.expect(record.task_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        return await task_outcome(d, record.task_id, expected.finished, timeout)


@routes.get("/api/v1/users/buffer/capacity/{user_id}/{blob_type}")
@endpoint("The ids of the user's blobs in one buffer state", query=BufferStatusQuery, data=Ids)
async def buffer_status(request: web.Request, query: BufferStatusQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    ids = await blob_ids_with_status(d.store, project, user_id, params.blob_type(request).value, query.status)
    return ok({"ids": ids})
