"""Context: the memory block an app puts into its prompt (Memobase ``/api/v1/users/context``).

Events are the newest ones within ``time_range_in_days``, or, when ``chats_str`` is given,
the ones ``search_events`` finds for the latest chats (above ``event_similarity_threshold``),
best first. With ``full_profile_and_only_search_event=false`` the chats also rank the profile
(as ``GET /users/profile`` does with ``chats_str``); by default, as in Memobase, the chats
search events only. ``require_event_summary=true`` leaves out events without a summary (tip).
"""

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from api import params
from api.context import DEFAULT_TEMPLATE, Budget, ContextParts, build_context, check_template, event_line, message_line
from api.deps import Deps, project_of, settled
from api.endpoint import endpoint
from api.envelope import dumps, invalid, ok, ok_encoded, utc
from api.memory_params import MAX_COUNT, TopicsQuery
from api.profile_filters import profile_line, select_profiles
from api.query_embedding import query_embedding
from api.read_cache import Expiring
from api.user_reads import EVENT_CANDIDATES
from projections.search import search_events
from streams.records import ChatMessage
from streams.tokens import count_tokens, truncate_to_tokens

routes = web.RouteTableDef()

QUERY_MESSAGES = 3  # the latest chats that make the event search query
QUERY_TOKENS = 512
DEFAULT_BUDGET = 1000  # tokens


class Context(BaseModel):
    context: str


class ContextQuery(TopicsQuery):
    max_token_size: int = Field(
        DEFAULT_BUDGET,
        ge=0,
        le=MAX_COUNT,
        description=f"most tokens in the context (cl100k); 0: the default {DEFAULT_BUDGET} (Memobase's Go SDK sends 0 when unset)",
    )
    profile_event_ratio: float = Field(0.6, ge=0, le=1, description="share of the budget for the profile")
    fill_window_with_events: bool = Field(False, description="give the profile's unused share to events")
    customize_context_prompt: str = Field(
        "", description="a template with {profile_section}, {event_section} and optionally {working_memory_section}"
    )
    require_event_summary: bool = Field(False, description="leave out events without a summary")
    time_range_in_days: int = Field(180, ge=1, le=36_500, description="only events from the last this many days")
    event_similarity_threshold: float = Field(
        0.2, ge=0, le=1, description="lowest similarity of events found for chats_str"
    )
    full_profile_and_only_search_event: bool = Field(True, description="false: chats_str also ranks the profile")


async def _events(
    d: Deps, project: str, user_id: str, chats: list[ChatMessage], query: ContextQuery
) -> list[dict[str, Any]]:
    days = query.time_range_in_days
    if chats:
        text = truncate_to_tokens("\n".join(m.content for m in chats[-QUERY_MESSAGES:]), QUERY_TOKENS)
        return await search_events(
            d.store,
            project,
            user_id,
            query=text,
            query_embedding=await query_embedding(d, text),
            topk=EVENT_CANDIDATES,
            similarity_threshold=query.event_similarity_threshold,
            time_range_in_days=days,
        )
    return await d.reads.newest_events(
        project, user_id, time_range_in_days=days, need_summary=query.require_event_summary
    )


class ContextTokens(BaseModel):
    context: str
    tokens: int = Field(description="cl100k tokens the context takes")
    max_token_size: int = Field(description="the budget it was packed into")


@routes.get("/api/v1/users/context/{user_id}")
@endpoint("The memory block for a prompt: profile, events and working memory", query=ContextQuery, data=Context)
async def get_context(request: web.Request, query: ContextQuery) -> web.Response:
    return ok_encoded(await user_context(request, query))


@routes.get("/api/v1/users/context/{user_id}/tokens")
@endpoint(
    "The same context with its token count and budget (a Memstream extension)", query=ContextQuery, data=ContextTokens
)
async def get_context_tokens(request: web.Request, query: ContextQuery) -> web.Response:
    context = json.loads(await user_context(request, query))["context"]
    budget = query.max_token_size or DEFAULT_BUDGET
    return ok({"context": context, "tokens": count_tokens(context), "max_token_size": budget})


async def user_context(request: web.Request, query: ContextQuery) -> str:
    """What ``GET /users/context`` answers (``{"context": …}``), encoded. Without chats to search
    by, it is made of the user's copies alone and kept with them (``api.user_reads``) until the
    user changes or its oldest event leaves the time range."""
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    template = query.customize_context_prompt
    if template and (problem := check_template(template)):
        raise invalid(f"customize_context_prompt: {problem}")
    chats = query.chats()

    async def make() -> dict[str, str] | Expiring:
        return await _context(d, project, user_id, chats, query)

    if chats or query.require_event_summary:
        made = await make()
        return dumps(made.value if isinstance(made, Expiring) else made)
    return await d.reads.answer(project, user_id, "context", query, make)


async def _context(
    d: Deps, project: str, user_id: str, chats: list[ChatMessage], query: ContextQuery
) -> dict[str, str] | Expiring:
    budget = Budget(query.max_token_size or DEFAULT_BUDGET, query.profile_event_ratio, query.fill_window_with_events)
    spec = query.profile_filter()
    if not query.full_profile_and_only_search_event:
        spec = replace(spec, chats=tuple(m.content for m in chats))
    slots, events, working = await asyncio.gather(
        d.reads.slots(project, user_id),
        _events(d, project, user_id, chats, query),
        d.reads.working(project, user_id),
    )
    parts = ContextParts(
        profiles=[profile_line(p) for p in select_profiles(slots, spec)],
        events=[line for e in events if (line := event_line(e, query.require_event_summary))],
        working=[message_line(m, blob["created_at"]) for blob in working for m in blob["messages"]],
    )
    answer = {"context": build_context(parts, budget, query.customize_context_prompt or DEFAULT_TEMPLATE)}
    if not events:
        return answer
    # the context changes when its oldest candidate event leaves the time range
    oldest = min(utc(e["created_at"]) for e in events)
    return Expiring(answer, (oldest + timedelta(days=query.time_range_in_days)).timestamp())
