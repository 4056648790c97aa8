"""Read model: profile slots, one row per ``topic::sub_topic``."""

from typing import Any

from projections.store import Store

_COLUMNS = "toString(profile_id) AS id, topic, sub_topic, content, created_at, updated_at"


async def list_profiles(store: Store, project_id: str, user_id: str) -> list[dict[str, Any]]:
    """The user's slots, most recently updated first."""
    return await store.query(
        f"SELECT {_COLUMNS} FROM {store.database}.profiles FINAL WHERE project_id = {{p:String}} AND user_id = {{u:String}} "
        "ORDER BY updated_at DESC, topic, sub_topic",
        {"p": project_id, "u": user_id},
    )


async def get_profile(store: Store, project_id: str, user_id: str, profile_id: str) -> dict[str, Any] | None:
    """One live slot by id, or None when it does not exist (or was deleted)."""
    rows = await store.query(
        f"SELECT {_COLUMNS} FROM {store.database}.profiles FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String} AND profile_id = {i:UUID}",
        {"p": project_id, "u": user_id, "i": profile_id},
    )
    return rows[0] if rows else None
