"""What a ``wait_process=true`` request answers once its task has ended."""

import asyncio

from api.deps import Deps, until_visible
from api.envelope import ApiError
from api.waiter import within
from projections.tasks import get_task
from streams.events import TaskFinished


async def task_outcome(
    d: Deps, project_id: str, task_id: str, finished: "asyncio.Future[TaskFinished]", timeout: float
) -> list[dict]:
    """Wait for the task's end, then until the read models show it, so a read right after sees its
    results. Returns the ``ChatModalResponse`` list, or errno 500 naming the task when it failed."""
    ended = await within(finished, timeout, task_id)

    async def projected() -> bool:
        task = await get_task(d.store, project_id, task_id)
        return task is not None and task["status"] == ended.status

    await until_visible(projected, d.settings.read_your_writes_timeout)
    if ended.status == "failed":
        raise ApiError(500, f"processing failed: {ended.error}", task_id=task_id)
    return [r.model_dump() for r in ended.results]
