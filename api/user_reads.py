"""A user's memory as the profile and context reads take it: through the API process's copy
(``api.read_cache``) when it has one, from ClickHouse otherwise.

The copy of events is the newest ``EVENT_CANDIDATES`` with no time filter; a read's
``time_range_in_days`` keeps those created since, which are exactly the newest that many
within the range (the range only cuts off the oldest). Reads the copy cannot answer exactly
(only events with a summary, a search) go to ClickHouse.

A whole answer made of those copies alone (the profile and context routes' ``data``) is kept
too, encoded, per route and parameters (``answer``).
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from api.envelope import dumps, utc
from api.read_cache import Expiring, ReadCache
from projections.events import recent_events
from projections.profiles import list_profiles
from projections.store import Row, Store
from projections.working_memory import unprocessed_chats

EVENT_CANDIDATES = 50  # most events a context considers; the budget usually cuts earlier
WORKING_BLOBS = 20  # most unprocessed chat blobs a context considers for working memory


class UserReads:
    def __init__(self, store: Store, cache: ReadCache) -> None:
        self._store, self.cache = store, cache

    async def slots(self, project_id: str, user_id: str) -> list[Row]:
        """The user's live slots, most recently updated first."""
        return await self.cache.get(
            project_id, user_id, "slots", lambda: list_profiles(self._store, project_id, user_id)
        )

    async def newest_events(
        self, project_id: str, user_id: str, *, time_range_in_days: int, need_summary: bool = False
    ) -> list[Row]:
        """The newest ``EVENT_CANDIDATES`` events created in the last ``time_range_in_days`` days."""
        if need_summary:
            return await recent_events(
                self._store,
                project_id,
                user_id,
                EVENT_CANDIDATES,
                time_range_in_days=time_range_in_days,
                need_summary=True,
            )
        events = await self.cache.get(
            project_id, user_id, "events", lambda: recent_events(self._store, project_id, user_id, EVENT_CANDIDATES)
        )
        since = datetime.now(UTC) - timedelta(days=time_range_in_days)
        return [e for e in events if utc(e["created_at"]) >= since]

    async def working(self, project_id: str, user_id: str) -> list[dict[str, Any]]:
        """The user's newest ``WORKING_BLOBS`` unprocessed chat blobs, oldest first."""
        return await self.cache.get(
            project_id, user_id, "working", lambda: unprocessed_chats(self._store, project_id, user_id, WORKING_BLOBS)
        )

    async def answer(
        self, project_id: str, user_id: str, route: str, params: BaseModel, make: Callable[[], Awaitable[Any]]
    ) -> str:
        """The user's answer to ``route`` with ``params`` as JSON: kept, or made by ``make`` (which
        reads the user only through this object, and returns ``Expiring`` when the clock changes it)."""

        async def encoded() -> Any:
            made = await make()
            return Expiring(dumps(made.value), made.until) if isinstance(made, Expiring) else dumps(made)

        return await self.cache.get(project_id, user_id, f"{route}?{params.model_dump_json()}", encoded)
