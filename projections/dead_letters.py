"""Read model: the dead letters (what could not be processed, and why)."""

from typing import Any

from projections.store import Store


async def dead_letters_by_reason(store: Store, project_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """How many dead letters each reason has (of one project, or of all), the most frequent first."""
    where = "WHERE project_id = {p:String}" if project_id is not None else ""
    return await store.query(
        f"SELECT reason, kind, count() AS count, max(at) AS last_at FROM {store.database}.dead_letters FINAL {where} "
        "GROUP BY reason, kind ORDER BY count DESC, last_at DESC LIMIT {n:UInt32}",
        {"p": project_id or "", "n": limit},
    )
