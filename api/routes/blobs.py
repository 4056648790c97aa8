"""Blobs: insert (async by default), read, list, delete."""

from aiohttp import web

from api import params
from api.deps import deps, project_of, until_visible
from api.envelope import not_found, ok
from api.models import InsertBlobBody, new_blob
from api.outcomes import task_outcome
from api.waiter import within
from projections.blobs import get_blob, list_blob_ids
from streams.events import BUFFERED_BLOB_TYPES, BlobDeleted

routes = web.RouteTableDef()


@routes.post("/api/v1/blobs/insert/{user_id}")
async def insert_blob(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    wait = params.flag(request, "wait_process")
    timeout = params.number(request, "wait_timeout", d.settings.wait_timeout)
    payload = await params.body(request, InsertBlobBody)
    record = new_blob(project, user_id, payload.blob_type, payload.checked_data(), payload.fields, payload.created_at)
    answer = {"id": record.blob_id, "task_id": record.task_id}
    if not wait:
        await d.producer.send(d.settings.topic_ingest, record)
        return ok(answer)
    async with d.waiter.expect(record.task_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        buffered = await within(expected.buffered, timeout, record.task_id)
        if buffered.flush_id is None and buffered.blob_type in BUFFERED_BLOB_TYPES:
            return ok({**answer, "chat_results": []})
        results = await task_outcome(d, project, record.task_id, expected.finished, timeout)
    return ok({**answer, "chat_results": results})


@routes.get("/api/v1/blobs/{user_id}/{blob_id}")
async def read_blob(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob_id = params.uuid_param(request, "blob_id")
    blob = await get_blob(d.store, project, user_id, blob_id)
    if blob is None:
        raise not_found(f"blob {blob_id}")
    return ok(blob)


@routes.delete("/api/v1/blobs/{user_id}/{blob_id}")
async def delete_blob(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob_id = params.uuid_param(request, "blob_id")
    if await get_blob(d.store, project, user_id, blob_id) is None:
        raise not_found(f"blob {blob_id}")
    await d.producer.send(d.settings.topic_ingest, BlobDeleted(project_id=project, user_id=user_id, blob_id=blob_id))

    async def gone() -> bool:
        return await get_blob(d.store, project, user_id, blob_id) is None

    await until_visible(gone, d.settings.read_your_writes_timeout)
    return ok()


@routes.get("/api/v1/users/blobs/{user_id}/{blob_type}")
async def list_blobs(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob_type = params.blob_type(request)
    page = params.integer(request, "page", 0)
    page_size = params.integer(request, "page_size", 10, low=1, high=1000)
    ids = await list_blob_ids(d.store, project, user_id, blob_type.value, page, page_size)
    return ok({"ids": ids})
