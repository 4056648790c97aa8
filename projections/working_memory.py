"""Read model: a user's chat messages that memory has not absorbed yet (working memory).

A chat blob is unprocessed while its buffer row is ``idle`` (waiting in the window) or
``processing`` (flushed, extraction running), and also in the moment between its insert and
the buffer agent taking it (no buffer row yet: the blob row comes straight from the ingest
topic). ``done`` blobs are in the profile and events; ``failed`` ones wait for a replay and are
left out so a dead flush does not haunt every context.
"""

import json
from typing import Any

from projections.store import Store

UNPROCESSED = ("", "idle", "processing")  # "": the buffer row has not arrived yet
# The user's unprocessed chat blobs, with ``{db}`` for the database.
_UNPROCESSED_BLOBS = (
    "FROM (SELECT blob_id, blob_data, fields, created_at FROM {db}.blobs FINAL "
    "      WHERE project_id = {{p:String}} AND user_id = {{u:String}} AND blob_type = 'chat') AS b "
    "LEFT ANY JOIN (SELECT blob_id, status FROM {db}.buffer FINAL "
    "      WHERE project_id = {{p:String}} AND user_id = {{u:String}}) AS s ON b.blob_id = s.blob_id "
    "WHERE s.status IN {{statuses:Array(String)}}"
)


async def unprocessed_chats(store: Store, project_id: str, user_id: str, limit: int) -> list[dict[str, Any]]:
    """The user's newest unprocessed chat blobs (at most ``limit``), oldest first.

    Each row: ``blob_id``, ``created_at``, ``messages`` (the blob's chat messages as inserted) and
    ``fields`` (as inserted, ``{}`` when none).
    """
    rows = await store.query(
        "SELECT b.blob_id AS blob_id, b.blob_data AS blob_data, b.fields AS fields, b.created_at AS created_at "
        f"{_UNPROCESSED_BLOBS.format(db=store.database)} "
        "ORDER BY b.created_at DESC, b.blob_id DESC LIMIT {n:UInt32}",
        {"p": project_id, "u": user_id, "statuses": list(UNPROCESSED), "n": limit},
    )
    return [
        {
            "blob_id": r["blob_id"],
            "created_at": r["created_at"],
            "messages": json.loads(r["blob_data"]).get("messages", []),
            "fields": json.loads(r["fields"] or "{}"),
        }
        for r in reversed(rows)
    ]


async def count_unprocessed_chats(store: Store, project_id: str, user_id: str) -> int:
    rows = await store.query(
        f"SELECT count() AS n {_UNPROCESSED_BLOBS.format(db=store.database)}",
        {"p": project_id, "u": user_id, "statuses": list(UNPROCESSED)},
    )
    return int(rows[0]["n"])
