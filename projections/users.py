"""Read model: users."""

import json
from typing import Any

from projections.store import Store


async def get_user(store: Store, project_id: str, user_id: str) -> dict[str, Any] | None:
    rows = await store.query(
        f"SELECT data, created_at, updated_at FROM {store.database}.users FINAL "
        "WHERE project_id = {p:String} AND user_id = {u:String}",
        {"p": project_id, "u": user_id},
    )
    if not rows:
        return None
    row = rows[0]
    return {
        "id": user_id,
        "data": json.loads(row["data"] or "{}"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


# Orders a listing accepts: Memobase's (updated_at, profile_count, event_count) plus created_at.
USER_ORDERS = ("updated_at", "created_at", "profile_count", "event_count")

_MATCHING = (
    "SELECT user_id, data, created_at, updated_at FROM {db}.users FINAL WHERE project_id = {{p:String}} "
    "AND ({{s:String}} = '' OR positionCaseInsensitiveUTF8(user_id, {{s:String}}) > 0 "
    "OR positionCaseInsensitiveUTF8(data, {{s:String}}) > 0)"
)
_COUNT_PER_USER = (
    "SELECT user_id, count() AS n FROM {db}.{table} FINAL WHERE project_id = {{p:String}} "
    "AND user_id IN (SELECT user_id FROM matching) GROUP BY user_id"
)


async def list_users(
    store: Store, project_id: str, search: str, order_by: str, descending: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the project's users whose id or data contains ``search`` (case-insensitive),
    each with its profile and event counts, and the number of users that match."""
    if order_by not in USER_ORDERS:
        raise ValueError(f"cannot order users by {order_by!r}")
    db = store.database
    params = {"p": project_id, "s": search, "limit": limit, "offset": offset}
    matching = _MATCHING.format(db=db)
    total = await store.query(f"SELECT count() AS n FROM ({matching})", params)
    rows = await store.query(
        f"WITH matching AS ({matching}) "
        "SELECT m.user_id AS id, m.data AS data, m.created_at AS created_at, m.updated_at AS updated_at, "
        "pc.n AS profile_count, ec.n AS event_count FROM matching AS m "
        f"LEFT JOIN ({_COUNT_PER_USER.format(db=db, table='profiles')}) AS pc ON pc.user_id = m.user_id "
        f"LEFT JOIN ({_COUNT_PER_USER.format(db=db, table='events')}) AS ec ON ec.user_id = m.user_id "
        f"ORDER BY {order_by} {'DESC' if descending else 'ASC'}, id "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
        params,
    )
    users = [{**row, "data": json.loads(row["data"] or "{}")} for row in rows]
    return users, total[0]["n"]
