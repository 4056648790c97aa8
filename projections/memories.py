"""Read model: whose memory an id is, across a project (MemOS deletes name ids, not users).

A memory id is a profile slot's, an event's or a chat blob's id; each is unique in its table, and
the lookup is scoped to one project, so a token can only ever find its own project's memories.
"""

from typing import Literal, NamedTuple

from projections.store import Store

Kind = Literal["profile", "event", "blob"]


class Owned(NamedTuple):
    kind: Kind
    user_id: str
    memory_id: str


async def owners_of(store: Store, project_id: str, memory_ids: list[str], user_id: str | None = None) -> list[Owned]:
    """The live memories among ``memory_ids`` in the project (of ``user_id`` only, when given)."""
    db = store.database
    mine = "project_id = {p:String} AND ({u:String} = '' OR user_id = {u:String})"
    rows = await store.query(
        f"SELECT 'profile' AS kind, user_id, toString(profile_id) AS id FROM {db}.profiles FINAL "
        f"WHERE {mine} AND toString(profile_id) IN {{ids:Array(String)}} "
        f"UNION ALL SELECT 'event' AS kind, user_id, toString(event_id) AS id FROM {db}.events FINAL "
        f"WHERE {mine} AND toString(event_id) IN {{ids:Array(String)}} "
        f"UNION ALL SELECT 'blob' AS kind, user_id, blob_id AS id FROM {db}.blobs FINAL "
        f"WHERE {mine} AND blob_id IN {{ids:Array(String)}}",
        {"p": project_id, "u": user_id or "", "ids": memory_ids},
    )
    return [Owned(r["kind"], r["user_id"], r["id"]) for r in rows]
