"""Read model: users."""

import json
from typing import Any

from projections.store import Store


async def get_user(store: Store, project_id: str, user_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        f"SELECT data, created_at, updated_at FROM {store.database}.users FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String}",
        {"p": project_id, "u": user_id},
    )
    if not rows:
        return None
    row = rows[0]
    return {"id": user_id, "data": json.loads(row["data"] or "{}"), "created_at": row["created_at"], "updated_at": row["updated_at"]}
