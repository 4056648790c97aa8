"""Read model: task status (running → completed | failed), with the error and results."""

import json
from typing import Any

from projections.store import Row, Store

# One task per row, its latest status: a task keeps one row per status it went through.
_TASKS = (
    "SELECT task_id, any(user_id) AS of_user, argMax(status, version) AS status, argMax(error, version) AS error, "
    "argMax(results, version) AS results, min(at) AS created_at, max(at) AS updated_at "
    "FROM {db}.tasks FINAL WHERE project_id = {{p:String}} AND {where} GROUP BY task_id"
)


def _task(row: Row) -> dict[str, Any]:
    return {
        "task_id": row["task_id"],
        "user_id": row["of_user"],
        "status": row["status"],
        "error": row["error"] or None,
        "results": json.loads(row["results"] or "[]"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


async def get_task(store: Store, project_id: str, task_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        _TASKS.format(db=store.database, where="task_id = {t:String}"), {"p": project_id, "t": task_id}
    )
    return _task(rows[0]) if rows else None


async def user_tasks(store: Store, project_id: str, user_id: str, limit: int) -> list[dict[str, Any]]:
    """The user's newest ``limit`` tasks (by when they started), newest first."""
    rows = await store.query(
        _TASKS.format(db=store.database, where="user_id = {u:String}")
        + " ORDER BY created_at DESC, task_id LIMIT {n:UInt32}",
        {"p": project_id, "u": user_id, "n": limit},
    )
    return [_task(row) for row in rows]
