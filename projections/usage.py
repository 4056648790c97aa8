"""Read model: what a project spent, per UTC day — LLM calls and tokens (``usage``) and inserts (``blobs``).

Memobase's daily usage counts inserts and successful inserts; here every acknowledged insert
is in the log (a rejected one never reaches it), so both count the blobs accepted that day —
those still stored: deleting a blob or its user removes it from the count, while the token
rows stay (they hold no content and are the project's bill).
"""

from datetime import date, timedelta
from typing import Any

from projections.store import Store


async def daily_usage(store: Store, project_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """One entry per day from ``first`` to ``last`` (inclusive), in Memobase's ``DailyUsage`` shape
    plus ``total_llm_calls``; days without activity are zeros."""
    db = store.database
    tokens = await store.query(
        "SELECT day, sum(calls) AS calls, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens "
        f"FROM {db}.usage FINAL WHERE project_id = {{p:String}} AND day BETWEEN {{first:Date}} AND {{last:Date}} "
        "GROUP BY day",
        {"p": project_id, "first": first, "last": last},
    )
    inserts = await store.query(
        f"SELECT toDate(stored_at) AS day, count() AS n FROM {db}.blobs FINAL "
        "WHERE project_id = {p:String} AND toDate(stored_at) BETWEEN {first:Date} AND {last:Date} GROUP BY day",
        {"p": project_id, "first": first, "last": last},
    )
    return fill_days(first, last, tokens, {row["day"]: row["n"] for row in inserts})


def fill_days(first: date, last: date, tokens: list[dict[str, Any]], inserts: dict[date, int]) -> list[dict[str, Any]]:
    by_day = {row["day"]: row for row in tokens}
    days = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        spent = by_day.get(day, {})
        days.append(
            {
                "date": day.isoformat(),
                "total_insert": inserts.get(day, 0),
                "total_success_insert": inserts.get(day, 0),
                "total_input_token": spent.get("input_tokens", 0),
                "total_output_token": spent.get("output_tokens", 0),
                "total_llm_calls": spent.get("calls", 0),
            }
        )
    return days


async def tokens_since(store: Store, project_id: str, first: date) -> int:
    """Input plus output tokens the project spent from ``first`` on."""
    rows = await store.query(
        f"SELECT sum(input_tokens + output_tokens) AS n FROM {store.database}.usage FINAL "
        "WHERE project_id = {p:String} AND day >= {first:Date}",
        {"p": project_id, "first": first},
    )
    return int(rows[0]["n"]) if rows else 0
