"""Read model: every change of a profile slot (``profile_history``, one row per change, never replaced).

A slot moved to another topic/sub_topic by a manual edit gets the new key's id: the edit
deletes the old id and adds the new one (same ``source_id``). The new id's history starts
with the old id's changes up to that move, so a slot's story survives its renaming.
"""

from typing import Any

from projections.store import Store

_SCOPE = "project_id = {p:String} AND user_id = {u:String}"


async def slot_history(
    store: Store, project_id: str, user_id: str, profile_id: str, until_version: int | None = None
) -> list[dict[str, Any]]:
    """The slot's changes, oldest first (empty when it never existed); ``until_version`` cuts the end.

    ``version`` (the change's time in µs) orders changes; ``change_id`` breaks ties.
    """
    db = store.database
    rows = await store.query(
        f"SELECT profile_id, change_id, op, topic, sub_topic, content, source, source_id, at, "
        f"version FROM {db}.profile_history FINAL WHERE {_SCOPE} AND profile_id = {{i:UUID}} "
        "AND version <= {until:UInt64} ORDER BY version, change_id",
        {"p": project_id, "u": user_id, "i": profile_id, "until": until_version if until_version is not None else 2**64 - 1},
    )
    if rows and rows[0]["source"] == "manual" and rows[0]["op"] == "add":
        moves = await store.query(
            f"SELECT profile_id, version FROM {db}.profile_history FINAL "
            f"WHERE {_SCOPE} AND source_id = {{s:String}} AND op = 'delete' AND profile_id != {{i:UUID}} "
            "AND version <= {v:UInt64}",
            {"p": project_id, "u": user_id, "s": rows[0]["source_id"], "i": profile_id, "v": rows[0]["version"]},
        )
        if moves:
            rows = await slot_history(store, project_id, user_id, str(moves[0]["profile_id"]), moves[0]["version"]) + rows
    return [{**row, "profile_id": str(row["profile_id"])} for row in rows]


async def change_recorded(store: Store, project_id: str, user_id: str, profile_id: str, source_id: str) -> bool:
    """Whether a change of the slot made by ``source_id`` (a flush or an edit) is readable yet.

    The writer inserts a change's ``profiles`` row before its history row, so once this is true
    the profile read shows the change too.
    """
    rows = await store.query(
        f"SELECT 1 FROM {store.database}.profile_history WHERE {_SCOPE} AND profile_id = {{i:UUID}} "
        "AND source_id = {s:String} LIMIT 1",
        {"p": project_id, "u": user_id, "i": profile_id, "s": source_id},
    )
    return bool(rows)
