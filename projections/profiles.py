"""Read model: profile slots, one row per ``topic::sub_topic``."""

from typing import Any

from projections.store import Store


async def list_profiles(store: Store, project_id: str, user_id: str) -> list[dict[str, Any]]:
    """The user's slots, most recently updated first."""
    return await store.query(
        f"SELECT toString(profile_id) AS id, topic, sub_topic, content, created_at, updated_at "
        f"FROM {store.database}.profiles FINAL WHERE project_id = {{p:String}} AND user_id = {{u:String}} "
        "ORDER BY updated_at DESC, topic, sub_topic",
        {"p": project_id, "u": user_id},
    )
