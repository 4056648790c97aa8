"""Buffers: flush on request (optionally waiting for the extraction) and status per blob."""

import uuid
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from api import params
from api.deps import Deps, deps, project_of, settled
from api.endpoint import endpoint
from api.envelope import ok
from api.models import ChatModalResponse, Ids, WaitQuery
from api.outcomes import task_outcome
from projections.buffer import STATUSES, blob_ids_with_status, flush_chats
from projections.working_memory import unprocessed_chats
from streams.records import BUFFERED_BLOB_TYPES, BlobType, ChatMessage, FlushRequested

routes = web.RouteTableDef()


class BufferStatusQuery(BaseModel):
    status: Literal[STATUSES] = "idle"  # type: ignore[valid-type]  # Literal of the tuple's values


class ChatsQuery(BaseModel):
    limit: int = Field(100, ge=1, le=1000, description="most chat blobs returned")


class ChatBlob(BaseModel):
    blob_id: str
    created_at: datetime
    messages: list[ChatMessage]


class FlushedChats(BaseModel):
    flush_id: str
    blobs: list[ChatBlob]


class WorkingMemory(BaseModel):
    blobs: list[ChatBlob]


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


@routes.get("/api/v1/users/flush/{user_id}/{flush_id}")
@endpoint("The chats a flush's window took, oldest first (a Memstream extension)", query=ChatsQuery, data=FlushedChats)
async def flushed_chats(request: web.Request, query: ChatsQuery) -> web.Response:
    """What a flush read: the ``source_id`` of a slot change from a flush names it. Empty when the
    user has no flush of that id (a deleted blob leaves it)."""
    project, user_id = project_of(request), params.user_id(request)
    flush_id = params.path(request, "flush_id")
    d = await settled(request, user_id)
    return ok({"flush_id": flush_id, "blobs": await flush_chats(d.store, project, user_id, flush_id, query.limit)})


@routes.get("/api/v1/users/buffer/{user_id}/{blob_type}")
@endpoint(
    "Working memory: the user's newest blobs not extracted yet, oldest first (a Memstream extension)",
    query=ChatsQuery,
    data=WorkingMemory,
)
async def working_memory(request: web.Request, query: ChatsQuery) -> web.Response:
    """The chats in the open window or under extraction (what the context shows as working memory).
    Only chats are buffered: any other type has none."""
    project, user_id, blob_type = project_of(request), params.user_id(request), params.blob_type(request)
    d = await settled(request, user_id)
    if blob_type not in BUFFERED_BLOB_TYPES:
        return ok({"blobs": []})
    blobs = await unprocessed_chats(d.store, project, user_id, query.limit)
    return ok({"blobs": [{k: b[k] for k in ("blob_id", "created_at", "messages")} for b in blobs]})
