"""Task status (MemOS style): every insert and flush has a task id."""

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.deps import project_of, settled
from api.endpoint import endpoint
from api.envelope import not_found, ok
from api.models import ChatModalResponse
from projections.tasks import get_task
from streams.records import FlushOutcome

routes = web.RouteTableDef()


class TaskRef(BaseModel):
    task_id: str


class Task(BaseModel):
    task_id: str
    user_id: str
    status: Literal["running", "completed", "failed"]
    error: str | None
    results: list[ChatModalResponse]
    created_at: datetime
    updated_at: datetime


async def find_task(request: web.Request, task_id: str) -> dict:
    """The project's task, errno 404 when it has none of that id. A task names no user, so this
    waits for the read models to hold every partition's writes."""
    d = await settled(request)
    task = await get_task(d.store, project_of(request), task_id)
    if task is None:
        raise not_found(f"task {task_id}")
    return task


async def task_answer(request: web.Request, task_id: str) -> web.Response:
    task = await find_task(request, task_id)
    results = [ChatModalResponse.of(FlushOutcome.model_validate(o)).model_dump() for o in task["results"]]
    return ok({**task, "results": results})


@routes.get("/api/v1/tasks/{task_id}")
@endpoint("A task's status: running, completed or failed (with its error)", data=Task)
async def task_status(request: web.Request) -> web.Response:
    return await task_answer(request, params.path(request, "task_id"))


@routes.post("/api/v1/get/status")
@endpoint("The same, in MemOS's form", body=TaskRef, data=Task)
async def task_status_memos(request: web.Request, body: TaskRef) -> web.Response:
    """MemOS's form of the same question: ``{"task_id": …}`` in the body."""
    return await task_answer(request, body.task_id)
