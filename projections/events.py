"""Read model: the user's event timeline."""

import json
from typing import Any

from projections.store import Store


async def recent_events(store: Store, project_id: str, user_id: str, topk: int) -> list[dict[str, Any]]:
    rows = await store.query(
        f"SELECT toString(event_id) AS id, event_data, created_at, updated_at FROM {store.database}.events FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String} ORDER BY created_at DESC LIMIT {k:UInt32}",
        {"p": project_id, "u": user_id, "k": topk},
    )
    return [{**row, "event_data": json.loads(row["event_data"])} for row in rows]
