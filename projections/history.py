"""Read model: every change of a profile slot (``profile_history``, one row per change, never replaced).

A slot keeps its id when an edit moves it to another topic/sub_topic, so its history is one story.
"""

from typing import Any

from projections.store import Store

_SCOPE = "project_id = {p:String} AND user_id = {u:String}"


async def slot_history(store: Store, project_id: str, user_id: str, profile_id: str) -> list[dict[str, Any]]:
    """The slot's changes, oldest first (empty when it never existed). ``version`` (the fact's
    ``seq``) orders them."""
    rows = await store.query(
        f"SELECT profile_id, change_id, op, topic, sub_topic, content, source, source_id, at, "
        f"version FROM {store.database}.profile_history FINAL WHERE {_SCOPE} AND profile_id = {{i:UUID}} "
        "ORDER BY version, change_id",
        {"p": project_id, "u": user_id, "i": profile_id},
    )
    return [{**row, "profile_id": str(row["profile_id"])} for row in rows]
