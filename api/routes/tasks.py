"""Task status (MemOS style): every insert and flush has a task id."""

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from api import params
from api.deps import project_of, settled
from api.endpoint import endpoint
from api.envelope import not_found, ok
from api.models import ChatModalResponse
from projections.tasks import get_task, user_tasks
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


class UserTasksQuery(BaseModel):
    limit: int = Field(50, ge=1, le=1000, description="most tasks returned")


class TaskList(BaseModel):
    tasks: list[Task]


async def find_task(request: web.Request, task_id: str) -> dict:
    """The project's task, errno 404 when it has none of that id. A task names no user, so this
    waits for the read models to hold every partition's writes."""
    d = await settled(request)
    task = await get_task(d.store, project_of(request), task_id)
    if task is None:
        raise not_found(f"task {task_id}")
    return task


def task_json(task: dict) -> dict:
    results = [ChatModalResponse.of(FlushOutcome.model_validate(o)).model_dump() for o in task["results"]]
    return {**task, "results": results}


async def task_answer(request: web.Request, task_id: str) -> web.Response:
    return ok(task_json(await find_task(request, task_id)))


@routes.get("/api/v1/tasks/{task_id}")
@endpoint("A task's status: running, completed or failed (with its error)", data=Task)
async def task_status(request: web.Request) -> web.Response:
    return await task_answer(request, params.path(request, "task_id"))


@routes.post("/api/v1/get/status")
@endpoint("The same, in MemOS's form", body=TaskRef, data=Task)
async def task_status_memos(request: web.Request, body: TaskRef) -> web.Response:
    """MemOS's form of the same question: ``{"task_id": …}`` in the body."""
    return await task_answer(request, body.task_id)


@routes.get("/api/v1/users/tasks/{user_id}")
@endpoint(
    "The user's tasks, newest first, with status and error (a Memstream extension)", query=UserTasksQuery, data=TaskList
)
async def user_task_list(request: web.Request, query: UserTasksQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    return ok({"tasks": [task_json(t) for t in await user_tasks(d.store, project, user_id, query.limit)]})
