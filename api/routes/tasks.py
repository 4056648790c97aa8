"""Task status (MemOS style): every insert and flush has a task id."""

from aiohttp import web
from pydantic import BaseModel

from api import params
from api.deps import deps, project_of
from api.envelope import not_found, ok
from projections.tasks import get_task

routes = web.RouteTableDef()


class StatusQuery(BaseModel):
    task_id: str


async def task_answer(request: web.Request, task_id: str) -> web.Response:
    task = await get_task(deps(request).store, project_of(request), task_id)
    if task is None:
        raise not_found(f"task {task_id}")
    return ok(task)


@routes.get("/api/v1/tasks/{task_id}")
async def task_status(request: web.Request) -> web.Response:
    return await task_answer(request, request.match_info["task_id"])


@routes.post("/api/v1/get/status")
async def task_status_memos(request: web.Request) -> web.Response:
    """MemOS's form of the same question: ``{"task_id": …}`` in the body."""
    query = await params.body(request, StatusQuery)
    return await task_answer(request, query.task_id)
