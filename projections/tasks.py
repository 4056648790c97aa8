"""Read model: task status (running → completed | failed), with the error and results."""

import json
from typing import Any

from projections.store import Store


async def get_task(store: Store, project_id: str, task_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        "SELECT any(user_id) AS user_id, argMax(status, version) AS status, argMax(error, version) AS error, "
        "argMax(results, version) AS results, min(at) AS created_at, max(at) AS updated_at "
        f"FROM {store.database}.tasks FINAL WHERE project_id = {{p:String}} AND task_id = {{t:String}} GROUP BY task_id",
        {"p": project_id, "t": task_id},
    )
    if not rows:
        return None
    row = rows[0]
    return {
        "task_id": task_id,
        "user_id": row["user_id"],
        "status": row["status"],
        "error": row["error"] or None,
        "results": json.loads(row["results"] or "[]"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
