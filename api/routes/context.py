"""Context: the memory block an app puts into its prompt (Memobase ``/api/v1/users/context``).

Events are the newest ones within ``time_range_in_days``, or, when ``chats_str`` is given,
the ones ``search_events`` finds for the latest chats (above ``event_similarity_threshold``),
best first. With ``full_profile_and_only_search_event=false`` the chats also rank the profile
(as ``GET /users/profile`` does with ``chats_str``); by default, as in Memobase, the chats
search events only. ``require_event_summary=true`` leaves out events without a summary (tip).
"""

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp import web

from api import memory_params, params
from api.context import DEFAULT_TEMPLATE, Budget, ContextParts, build_context, check_template, event_line, message_line
from api.deps import Deps, deps, project_of
from api.envelope import invalid, ok
from api.profile_filters import profile_line, select_profiles
from api.query_embedding import query_embedding
from projections.events import recent_events
from projections.profiles import list_profiles
from projections.search import search_events
from projections.working_memory import unprocessed_chats
from streams.events import ChatMessage
from streams.tokens import truncate_to_tokens

routes = web.RouteTableDef()

EVENT_CANDIDATES = 50  # most events considered; the budget usually cuts earlier
WORKING_BLOBS = 20  # most unprocessed chat blobs considered for working memory
QUERY_MESSAGES = 3  # the latest chats that make the event search query
QUERY_TOKENS = 512


async def _events(
    d: Deps, project: str, user_id: str, chats: list[ChatMessage], days: int, threshold: float, require_summary: bool
) -> list[dict[str, Any]]:
    if chats:
        query = truncate_to_tokens("\n".join(m.content for m in chats[-QUERY_MESSAGES:]), QUERY_TOKENS)
        return await search_events(
            d.store, project, user_id, query=query, query_embedding=await query_embedding(d, query),
            topk=EVENT_CANDIDATES, similarity_threshold=threshold, time_range_in_days=days,
        )
    return await recent_events(
        d.store, project, user_id, EVENT_CANDIDATES, time_range_in_days=days, need_summary=require_summary
    )


@routes.get("/api/v1/users/context/{user_id}")
async def get_context(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    budget = Budget(
        max_tokens=params.integer(request, "max_token_size", 1000, low=1, high=1_000_000),
        profile_ratio=params.number(request, "profile_event_ratio", 0.6, low=0.0, high=1.0),
        fill_window_with_events=params.flag(request, "fill_window_with_events"),
    )
    template = request.query.get("customize_context_prompt", "")
    if template and (problem := check_template(template)):
        raise invalid(f"customize_context_prompt: {problem}")
    require_summary = params.flag(request, "require_event_summary")
    days = params.integer(request, "time_range_in_days", 180, low=1, high=36_500)
    threshold = params.number(request, "event_similarity_threshold", 0.2, low=0.0, high=1.0)
    chats = memory_params.chats(request)
    spec = memory_params.profile_filter(request)
    if not params.flag(request, "full_profile_and_only_search_event", True):
        spec = replace(spec, chats=tuple(m.content for m in chats))
    slots, events, working = await asyncio.gather(
        list_profiles(d.store, project, user_id),
        _events(d, project, user_id, chats, days, threshold, require_summary),
        unprocessed_chats(d.store, project, user_id, WORKING_BLOBS),
    )
    parts = ContextParts(
        profiles=[profile_line(p) for p in select_profiles(slots, spec)],
        events=[line for e in events if (line := event_line(e, require_summary))],
        working=[message_line(m, blob["created_at"]) for blob in working for m in blob["messages"]],
    )
    return ok({"context": build_context(parts, budget, template or DEFAULT_TEMPLATE)})
