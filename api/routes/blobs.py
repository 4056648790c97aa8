"""Blobs: insert (async by default), read, list, delete."""

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from api import params
from api.deps import Deps, deps, project_of, settled, write_readable
from api.endpoint import endpoint
from api.envelope import not_found, ok
from api.models import Accepted, Ids, InsertBlobBody, WaitQuery, bounded, new_blob
from api.outcomes import task_outcome
from api.waiter import within
from projections.blobs import get_blob, list_blob_ids
from streams.records import BUFFERED_BLOB_TYPES, BlobDeleted, BlobInserted, BlobType

routes = web.RouteTableDef()


class Blob(BaseModel):
    blob_type: BlobType
    blob_data: dict[str, Any]
    fields: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class PageQuery(BaseModel):
    page: int = Field(0, ge=0, le=1_000_000)
    page_size: int = Field(10, ge=1, le=1000)


@routes.post("/api/v1/blobs/insert/{user_id}")
@endpoint(
    "Insert a blob; it is processed later unless wait_process=true", query=WaitQuery, body=InsertBlobBody, data=Accepted
)
async def insert_blob(request: web.Request, query: WaitQuery, body: InsertBlobBody) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    timeout = query.timeout(d.settings.wait_timeout)
    record = bounded(
        new_blob(project, user_id, body.blob_type, body.checked_data(), body.fields, body.created_at),
        d.settings.limits(),
    )
    answer = {"id": record.blob_id, "task_id": record.task_id}
    if not query.wait_process:
        await d.producer.send(d.settings.topic_ingest, record)
        return ok(answer)
    results = await insert_processed(d, record, timeout)
    return ok({**answer, "chat_results": results or []})


async def insert_processed(d: Deps, record: BlobInserted, timeout: float) -> list[dict] | None:
    """Send the insert and wait for what it started: the extraction's results when the blob was
    processed (or closed its chat window), None when it is stored and waits in its buffer (readable)."""
    async with d.waiter.expect(record.task_id) as expected:
        await d.producer.send(d.settings.topic_ingest, record)
        stored = await within(expected.stored, timeout, record.task_id)
        if stored.fact.flush_id is None and stored.fact.blob_type in BUFFERED_BLOB_TYPES:
            await d.consistency.until_projected(stored.partition, stored.offset, f"blob {record.blob_id}")
            return None
        return await task_outcome(d, record.task_id, expected.finished, timeout)


@routes.get("/api/v1/blobs/{user_id}/{blob_id}")
@endpoint("Read a blob as inserted", data=Blob)
async def read_blob(request: web.Request) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    blob_id = params.path(request, "blob_id")
    blob = await get_blob(d.store, project, user_id, blob_id)
    if blob is None:
        raise not_found(f"blob {blob_id}")
    return ok(blob)


@routes.delete("/api/v1/blobs/{user_id}/{blob_id}")
@endpoint("Delete a blob (success whether or not it existed, as Memobase answers)")
async def delete_blob(request: web.Request) -> web.Response:
    """Always sent: the blob may be in the log and not yet readable. Returns once it is gone."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    await forget_blob(d, project, user_id, params.path(request, "blob_id"))
    return ok()


async def forget_blob(d: Deps, project: str, user_id: str, blob_id: str) -> None:
    """Delete the blob; returns once it is gone from the read models."""
    await write_readable(
        d, BlobDeleted(project_id=project, user_id=user_id, blob_id=blob_id), f"the delete of blob {blob_id}"
    )


@routes.get("/api/v1/users/blobs/{user_id}/{blob_type}")
@endpoint("The ids of a user's blobs of one type, oldest first", query=PageQuery, data=Ids)
async def list_blobs(request: web.Request, query: PageQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    ids = await list_blob_ids(d.store, project, user_id, params.blob_type(request).value, query.page, query.page_size)
    return ok({"ids": ids})
