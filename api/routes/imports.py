"""Profile import (Memobase ``/api/v1/users/profile/import``): a text becomes a chat blob and a flush.

``{"context": text}`` is logged as one user message, followed at once by a flush request on
the same partition, so the flush covers it (and whatever the user's buffer held before).
The answer carries the blob's task: it completes when the extraction that covered the text
has, even when the text alone filled the buffer and was flushed by size before the request.
"""

import uuid

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api import params
from api.deps import Deps, deps, project_of
from api.endpoint import endpoint
from api.envelope import ok
from api.models import Accepted, WaitQuery, bounded, new_blob
from api.outcomes import task_outcome
from streams.records import BlobInserted, BlobType, FlushRequested

routes = web.RouteTableDef()


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    context: str = Field(min_length=1)


async def _send(d: Deps, blob: BlobInserted, flush: FlushRequested) -> None:
    await d.producer.send(d.settings.topic_ingest, blob)
    await d.producer.send(d.settings.topic_ingest, flush)


@routes.post("/api/v1/users/profile/import/{user_id}")
@endpoint("Import a text about the user: one chat message and a flush", query=WaitQuery, body=ImportBody, data=Accepted)
async def import_profile(request: web.Request, query: WaitQuery, body: ImportBody) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    blob = bounded(
        new_blob(project, user_id, BlobType.chat, {"messages": [{"role": "user", "content": body.context}]}),
        d.settings.limits(),
    )
    flush = FlushRequested(project_id=project, user_id=user_id, blob_type=BlobType.chat, task_id=str(uuid.uuid4()))
    answer = {"id": blob.blob_id, "task_id": blob.task_id}
    if not query.wait_process:
        await _send(d, blob, flush)
        return ok(answer)
    async with d.waiter.expect(blob.task_id) as expected:
        await _send(d, blob, flush)
        results = await task_outcome(d, blob.task_id, expected.finished, query.timeout(d.settings.wait_timeout))
    return ok({**answer, "chat_results": results})
