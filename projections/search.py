"""Read model: searching a user's events and their gists, best match first.

Two rankings, picked by whether the caller has an embedding of the query:

- **semantic**: ``similarity = 1 - cosineDistance(row embedding, query embedding)``. Rows without an
  embedding (recorded while no embedder was configured) or of another dimension are skipped.
- **lexical**: ``similarity`` = the share of the query's distinct words found among the row's
  words. Words are lowercased runs of Unicode letters and digits on both sides, so "oslo" finds
  "Oslo's" but "plane" does not find "planes". An event's words are its tip and its profile
  changes' contents (``events.event_text``); a gist's are its content.

Either way rows under ``similarity_threshold`` (and lexical rows matching no word) are dropped,
and equal scores go to the newest row.
"""

from dataclasses import dataclass
from typing import Any

from projections.events import EVENT_COLUMNS, USER_SCOPE, WITHIN_DAYS, event_rows, scope
from projections.store import Row, Store

EVENT_TEXT = (
    "concat(event_tip, ' ', arrayStringConcat(arrayMap(d -> JSONExtractString(d, 'content'), "
    "JSONExtractArrayRaw(event_data, 'profile_delta')), ' '))"
)
# Each ranking is (score SQL, the condition a row must meet to be scored at all).
SEMANTIC = ("1 - cosineDistance(embedding, {q:Array(Float32)})", "length(embedding) = length({q:Array(Float32)})")


def _words(sql: str) -> str:
    # Runs of Unicode letters and digits; the backslashes are escaped once more for the SQL string literal.
    return rf"arrayDistinct(extractAll(lowerUTF8({sql}), '[\\p{{L}}\\p{{N}}]+'))"


def _lexical(text: str) -> tuple[str, str]:
    query_words = _words("{text:String}")
    return f"length(arrayIntersect({query_words}, {_words(text)})) / length({query_words})", "similarity > 0"


@dataclass(frozen=True)
class _Source:
    table: str
    columns: str
    text: str  # SQL: the row's words, for lexical ranking
    live: str = "1"  # SQL: an extra condition a row must meet, with ``{db}`` for the database


EVENTS = _Source("events", EVENT_COLUMNS, EVENT_TEXT)
GISTS = _Source(
    "event_gists",
    "toString(gist_id) AS id, toString(event_id) AS event_id, content, created_at, updated_at",
    "content",
    # A gist whose event is gone is gone too, even if its own retirement has not landed yet.
    f"event_id IN (SELECT event_id FROM {{db}}.events FINAL WHERE {USER_SCOPE})",
)


@dataclass(frozen=True)
class Criteria:
    """What to search for; ``query_embedding`` None means rank by ``query``'s words."""

    query: str
    query_embedding: list[float] | None
    topk: int
    similarity_threshold: float
    time_range_in_days: int


async def _search(store: Store, source: _Source, project_id: str, user_id: str, criteria: Criteria) -> list[Row]:
    embedding = criteria.query_embedding
    score, usable = SEMANTIC if embedding is not None else _lexical(source.text)
    db = store.database
    sql = (
        f"SELECT {source.columns}, {score} AS similarity FROM {db}.{source.table} FINAL "
        f"WHERE {USER_SCOPE} AND {WITHIN_DAYS} AND {source.live.replace('{db}', db)} AND {usable} "
        "AND similarity >= {t:Float64} ORDER BY similarity DESC, created_at DESC LIMIT {k:UInt32}"
    )
    params: dict[str, Any] = scope(
        project_id,
        user_id,
        days=criteria.time_range_in_days,
        t=criteria.similarity_threshold,
        k=criteria.topk,
        **({"q": embedding} if embedding is not None else {"text": criteria.query}),
    )
    return await store.query(sql, params)


async def search_events(
    store: Store,
    project_id: str,
    user_id: str,
    *,
    query: str,
    query_embedding: list[float] | None,
    topk: int,
    similarity_threshold: float,
    time_range_in_days: int,
) -> list[Row]:
    """Events most like ``query``, shaped like ``recent_events`` rows plus ``similarity``.

    Semantic when ``query_embedding`` is given, lexical on ``query``'s words when it is None.
    """
    criteria = Criteria(query, query_embedding, topk, similarity_threshold, time_range_in_days)
    return event_rows(await _search(store, EVENTS, project_id, user_id, criteria))


async def search_gists(store: Store, project_id: str, user_id: str, criteria: Criteria) -> list[Row]:
    """Gists most like the query, in Memobase's ``UserEventGistData`` shape (plus their ``event_id``)."""
    rows = await _search(store, GISTS, project_id, user_id, criteria)
    for row in rows:
        row["gist_data"] = {"content": row.pop("content")}
    return rows
