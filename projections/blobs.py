"""Read model: blobs as inserted (the raw material of memory)."""

import json
from typing import Any

from projections.store import Store


async def get_blob(store: Store, project_id: str, user_id: str, blob_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        f"SELECT blob_type, blob_data, fields, created_at FROM {store.database}.blobs FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String} AND blob_id = {b:String}",
        {"p": project_id, "u": user_id, "b": blob_id},
    )
    if not rows:
        return None
    row = rows[0]
    return {
        "blob_type": row["blob_type"],
        "blob_data": json.loads(row["blob_data"]),
        "fields": json.loads(row["fields"] or "{}") or None,
        "created_at": row["created_at"],
        "updated_at": row["created_at"],
    }


async def list_blob_ids(
    store: Store, project_id: str, user_id: str, blob_type: str, page: int, page_size: int
) -> list[str]:
    rows = await store.query(
        f"SELECT blob_id FROM {store.database}.blobs FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String} AND blob_type = {t:String} "
        "ORDER BY created_at, blob_id LIMIT {n:UInt32} OFFSET {o:UInt32}",
        {"p": project_id, "u": user_id, "t": blob_type, "n": page_size, "o": page * page_size},
    )
    return [row["blob_id"] for row in rows]
