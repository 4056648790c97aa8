"""Blobs: insert (async by default), read, list, delete."""

import uuid

from aiohttp import web

from api import params
from api.deps import Deps, deps, project_of, until_visible
from api.envelope import ApiError, not_found, ok
from api.models import InsertBlobBody
from api.waiter import within
from projections.blobs import get_blob, list_blob_ids
from projections.tasks import get_task
from streams.events import BUFFERED_BLOB_TYPES, BlobDeleted, BlobInserted, TaskFinished, utc_now

routes = web.RouteTableDef()


async def finished_and_readable(d: Deps, project_id: str, finished: TaskFinished) -> list[dict]:
    """Wait until the read models show the task's end, so a read after ``wait_process`` sees its results."""
    task_id = finished.task_ids[-1]

    async def projected() -> bool:
        task = await get_task(d.store, project_id, task_id)
        return task is not None and task["status"] == finished.status

    await until_visible(projected, d.settings.read_your_writes_timeout)
    return task_results(finished)


def task_results(finished: TaskFinished) -> list[dict]:
    """The task's ``ChatModalResponse`` list, or errno 500 naming the task when extraction failed."""
    if finished.status == "failed":
        raise ApiError(500, f"processing failed: {finished.error}", task_id=finished.task_ids[-1])
    return [r.model_dump() for r in finished.results]


@routes.post("/api/v1/blobs/insert/{user_id}")
async def insert_blob(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    wait = params.flag(request, "wait_process")
    timeout = params.number(request, "wait_timeout", d.settings.wait_timeout)
    payload = await params.body(request, InsertBlobBody)
    record = BlobInserted(
        project_id=project,
        user_id=user_id,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type=payload.blob_type,
        blob_data=payload.checked_data(),
        fields=payload.fields,
        created_at=payload.created_at or utc_now(),
    )
    answer = {"id": record.blob_id, "task_id": record.task_id}
    if not wait:
        await d.producer.send(d.settings.topic_ingest, record)
        return ok(answer)
    async with d.waiter.expect(record.task_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        buffered = await within(expected.buffered, timeout, record.task_id)
        if buffered.flush_id is None and buffered.blob_type in BUFFERED_BLOB_TYPES:
            return ok({**answer, "chat_results": []})
        finished = await within(expected.finished, timeout, record.task_id)
    return ok({**answer, "chat_results": await finished_and_readable(d, project, finished)})


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
