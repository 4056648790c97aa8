"""Read model: the user's event timeline (one row per event, its gists in ``event_gists``).

Every reader returns rows in Memobase's ``UserEventData`` shape: ``id``, ``event_data`` (parsed),
``created_at``, ``updated_at``; search adds ``similarity``.
"""

import json
from typing import Any

from projections.store import Row, Store

# The columns of an event as the API returns it, and the filter every read starts with.
EVENT_COLUMNS = "toString(event_id) AS id, event_data, created_at, updated_at"
USER_SCOPE = "project_id = {p:String} AND user_id = {u:String}"
WITHIN_DAYS = "created_at >= now64(3) - toIntervalDay({days:UInt32})"


def scope(project_id: str, user_id: str, **more: Any) -> dict[str, Any]:
    """Parameters for ``USER_SCOPE`` plus ``more``."""
    return {"p": project_id, "u": user_id, **more}


def event_rows(rows: list[Row]) -> list[Row]:
    """Parse the stored ``event_data`` JSON of rows selected with ``EVENT_COLUMNS``."""
    return [{**row, "event_data": json.loads(row["event_data"])} for row in rows]


def event_text(event_data: dict[str, Any]) -> str:
    """An event as words: its tip, then each profile change's content, one per line.

    This is what ``max_token_size`` counts and what lexical search matches (``search.EVENT_TEXT``).
    """
    lines = [event_data.get("event_tip") or ""] + [d["content"] for d in event_data.get("profile_delta") or []]
    return "\n".join(line for line in lines if line)


async def recent_events(
    store: Store,
    project_id: str,
    user_id: str,
    topk: int,
    *,
    time_range_in_days: int | None = None,
    need_summary: bool = False,
) -> list[Row]:
    """The newest ``topk`` events; ``need_summary`` keeps only events that have a tip."""
    conditions = [USER_SCOPE]
    if time_range_in_days is not None:
        conditions.append(WITHIN_DAYS)
    if need_summary:
        conditions.append("event_tip != ''")
    rows = await store.query(
        f"SELECT {EVENT_COLUMNS} FROM {store.database}.events FINAL WHERE {' AND '.join(conditions)} "
        "ORDER BY created_at DESC LIMIT {k:UInt32}",
        scope(project_id, user_id, k=topk, days=time_range_in_days),
    )
    return event_rows(rows)


async def count_events(store: Store, project_id: str, user_id: str) -> int:
    rows = await store.query(
        f"SELECT count() AS n FROM {store.database}.events FINAL WHERE {USER_SCOPE}", scope(project_id, user_id)
    )
    return int(rows[0]["n"])


async def events_with_tags(
    store: Store, project_id: str, user_id: str, *, tags: list[str], tag_pairs: list[str], topk: int
) -> list[Row]:
    """The newest ``topk`` events carrying every tag in ``tags`` and every ``tag=value`` in ``tag_pairs``."""
    rows = await store.query(
        f"SELECT {EVENT_COLUMNS} FROM {store.database}.events FINAL WHERE {USER_SCOPE} "
        "AND hasAll(tags, {tags:Array(String)}) AND hasAll(tag_pairs, {pairs:Array(String)}) "
        "ORDER BY created_at DESC LIMIT {k:UInt32}",
        scope(project_id, user_id, tags=tags, pairs=tag_pairs, k=topk),
    )
    return event_rows(rows)


async def get_event(store: Store, project_id: str, user_id: str, event_id: str) -> Row | None:
    """One live event with its ``version`` (to tell when a rewrite has landed), or None."""
    rows = await store.query(
        f"SELECT {EVENT_COLUMNS}, version FROM {store.database}.events FINAL "
        f"WHERE {USER_SCOPE} AND event_id = {{e:UUID}}",
        scope(project_id, user_id, e=event_id),
    )
    return event_rows(rows)[0] if rows else None


async def gist_ids(store: Store, project_id: str, user_id: str, event_id: str) -> list[str]:
    """The ids of the event's live gists (an edit or delete retires them)."""
    rows = await store.query(
        f"SELECT toString(gist_id) AS id FROM {store.database}.event_gists FINAL "
        f"WHERE {USER_SCOPE} AND event_id = {{e:UUID}} ORDER BY id",
        scope(project_id, user_id, e=event_id),
    )
    return [row["id"] for row in rows]


async def recent_gists(store: Store, project_id: str, user_id: str, topk: int) -> list[Row]:
    """The newest ``topk`` live gists: ``id``, ``event_id``, ``content``, ``created_at``."""
    return await store.query(
        f"SELECT toString(gist_id) AS id, toString(event_id) AS event_id, content, created_at "
        f"FROM {store.database}.event_gists FINAL WHERE {USER_SCOPE} ORDER BY created_at DESC, id LIMIT {{k:UInt32}}",
        scope(project_id, user_id, k=topk),
    )
