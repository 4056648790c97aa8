"""Read model: where each blob is in its buffer's life (idle → processing → done | failed)."""

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
