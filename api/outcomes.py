"""What a ``wait_process=true`` request answers once its task has ended."""

import asyncio

from api.deps import Deps
from api.envelope import ApiError
from api.models import ChatModalResponse
from api.waiter import Located, within
from streams.records import TaskFinished


async def task_outcome(
    d: Deps, task_id: str, finished: "asyncio.Future[Located[TaskFinished]]", timeout: float
) -> list[dict]:
    """Wait for the task's end, then until ClickHouse holds it, so a read right after sees its
    results. Returns the ``ChatModalResponse`` list, or errno 500 naming the task when it failed."""
    ended = await within(finished, timeout, task_id)
    await d.consistency.until_projected(ended.partition, ended.offset, f"task {task_id}")
    if ended.fact.status == "failed":
        raise ApiError(500, f"processing failed: {ended.fact.error}", task_id=task_id)
    return [ChatModalResponse.of(o).model_dump() for o in ended.fact.outcomes]
