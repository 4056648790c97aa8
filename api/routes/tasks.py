"""Task status (MemOS style): every insert and flush has a task id."""

from aiohttp import web

from api.deps import deps, project_of
from api.envelope import not_found, ok
from projections.tasks import get_task

routes = web.RouteTableDef()


@routes.get("/api/v1/tasks/{task_id}")
async def task_status(request: web.Request) -> web.Response:
    d, project = deps(request), project_of(request)
    task_id = request.match_info["task_id"]
    task = await get_task(d.store, project, task_id)
    if task is None:
        raise not_found(f"task {task_id}")
    return ok(task)
