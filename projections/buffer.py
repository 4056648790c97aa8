"""Read model: where each blob is in its buffer's life (idle → processing → done | failed)."""

import json
from typing import Any

from projections.store import Store

STATUSES = ("idle", "processing", "done", "failed")


async def blob_ids_with_status(store: Store, project_id: str, user_id: str, blob_type: str, status: str) -> list[str]:
    rows = await store.query(
        f"SELECT blob_id FROM {store.database}.buffer FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String} AND blob_type = {t:String} AND status = {s:String} "
        "ORDER BY updated_at, blob_id",
        {"p": project_id, "u": user_id, "t": blob_type, "s": status},
    )
    return [row["blob_id"] for row in rows]


async def flush_chats(store: Store, project_id: str, user_id: str, flush_id: str, limit: int) -> list[dict[str, Any]]:
    """The chat blobs a flush's window took (at most ``limit``), oldest first: ``blob_id``,
    ``created_at`` and ``messages`` as inserted. Empty for a flush the user has none of."""
    db = store.database
    rows = await store.query(
        f"SELECT b.blob_id AS blob_id, b.blob_data AS blob_data, b.created_at AS created_at "
        f"FROM (SELECT blob_id, blob_data, created_at FROM {db}.blobs FINAL "
        "      WHERE project_id = {p:String} AND user_id = {u:String} AND blob_type = 'chat') AS b "
        f"INNER JOIN (SELECT blob_id FROM {db}.buffer FINAL "
        "      WHERE project_id = {p:String} AND user_id = {u:String} AND flush_id = {f:String}) AS s "
        "ON b.blob_id = s.blob_id ORDER BY b.created_at, b.blob_id LIMIT {n:UInt32}",
        {"p": project_id, "u": user_id, "f": flush_id, "n": limit},
    )
    return [
        {
            "blob_id": r["blob_id"],
            "created_at": r["created_at"],
            "messages": json.loads(r["blob_data"]).get("messages", []),
        }
        for r in rows
    ]
