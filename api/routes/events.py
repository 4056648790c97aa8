"""Events: the user's timeline (Memobase ``/api/v1/users/event``), its edits, and searching it.

Edits and deletes go through the log like every change: the API sends ``EventEdited`` /
``EventDeleted`` to the ingest topic (the extract agent re-embeds an edited event), then waits,
at most ``read_your_writes_timeout``, until the events projection shows the result.

Search is semantic when an embedder is configured and lexical otherwise (or when embedding the
query fails); ``data.search`` says which ran, each item's ``similarity`` holds its score.
"""

from datetime import datetime, timezone

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from api import params
from api.deps import Deps, deps, project_of, until_visible
from api.envelope import invalid, not_found, ok
from api.query_embedding import query_embedding
from projections.events import event_text, events_with_tags, get_event, gist_ids, recent_events
from projections.search import Criteria, search_events, search_gists
from projections.store import Row
from streams.events import EventData, EventDeleted, EventEdited, EventTag, ProfileDelta
from streams.tokens import count_tokens

routes = web.RouteTableDef()

MAX_TOPK = 1000
MAX_DAYS = 36500


class EventPatch(BaseModel):
    """The ``event_data`` fields a PUT may set; a field left out keeps its stored value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_tip: str | None = None
    event_tags: list[EventTag] | None = None
    profile_delta: list[ProfileDelta] = []


def merge(stored: EventData, patch: EventPatch) -> EventData:
    """Merge at the top level, as Memobase does: each field the patch sets replaces the stored one whole
    (``event_tags: []`` or ``event_tip: null`` clear them); fields it leaves out survive."""
    return EventData.model_validate({**stored.model_dump(), **patch.model_dump(exclude_unset=True)})


def parse_tags(raw: str) -> list[str]:
    """``emotion,topic`` → ``["emotion", "topic"]``; blanks between commas are ignored."""
    return [tag for tag in (part.strip() for part in raw.split(",")) if tag]


def parse_tag_values(raw: str) -> list[str]:
    """``emotion=happy,topic=work`` → ``["emotion=happy", "topic=work"]``, the events' ``tag_pairs`` form.

    The value is everything after the first ``=``; whitespace around tag and value is dropped.
    """
    pairs = []
    for item in parse_tags(raw):
        tag, sep, value = item.partition("=")
        if not (sep and tag.strip() and value.strip()):
            raise invalid(f"tag_values: '{item}' is not tag=value")
        pairs.append(f"{tag.strip()}={value.strip()}")
    return pairs


def within_tokens(events: list[Row], max_tokens: int) -> list[Row]:
    """The leading events whose texts (``event_text``: tip + profile changes) fit ``max_tokens`` together;
    stops at the first event that would pass it."""
    taken, used = [], 0
    for event in events:
        used += count_tokens(event_text(event["event_data"]))
        if used > max_tokens:
            break
        taken.append(event)
    return taken


def _optional_integer(request: web.Request, name: str, high: int) -> int | None:
    """A positive integer parameter that means "no limit" when absent."""
    return params.integer(request, name, 0, low=1, high=high) if request.query.get(name) else None


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _event_ids(request: web.Request) -> tuple[Deps, str, str, str]:
    return deps(request), project_of(request), params.user_id(request), params.uuid_param(request, "event_id")


async def _existing_event(d: Deps, project: str, user_id: str, event_id: str) -> Row:
    event = await get_event(d.store, project, user_id, event_id)
    if event is None:
        raise not_found(f"event {event_id}")
    return event


async def _criteria(request: web.Request, d: Deps) -> Criteria:
    query = request.query.get("query", "").strip()
    if not query:
        raise invalid("query: a search text is required")
    topk = params.integer(request, "topk", 10, low=1, high=MAX_TOPK)
    threshold = params.number(request, "similarity_threshold", 0.2, low=0.0, high=1.0)
    days = params.integer(request, "time_range_in_days", 180, low=1, high=MAX_DAYS)
    return Criteria(query, await query_embedding(d, query), topk, threshold, days)


def _mode(criteria: Criteria) -> str:
    return "lexical" if criteria.query_embedding is None else "semantic"


@routes.get("/api/v1/users/event/{user_id}")
async def get_events(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    topk = params.integer(request, "topk", 10, low=1, high=MAX_TOPK)
    max_tokens = _optional_integer(request, "max_token_size", 1_000_000)
    days = _optional_integer(request, "time_range_in_days", MAX_DAYS)
    need_summary = params.flag(request, "need_summary")
    events = await recent_events(d.store, project, user_id, topk, time_range_in_days=days, need_summary=need_summary)
    return ok({"events": events if max_tokens is None else within_tokens(events, max_tokens)})


@routes.put("/api/v1/users/event/{user_id}/{event_id}")
async def update_event(request: web.Request) -> web.Response:
    d, project, user_id, event_id = _event_ids(request)
    patch = await params.body(request, EventPatch)
    event = await _existing_event(d, project, user_id, event_id)
    record = EventEdited(
        project_id=project,
        user_id=user_id,
        user_event_id=event["id"],
        event_data=merge(EventData.model_validate(event["event_data"]), patch),
        created_at=_utc(event["created_at"]),
        gist_ids=await gist_ids(d.store, project, user_id, event["id"]),
    )
    await d.producer.send(d.settings.topic_ingest, record)

    async def rewritten() -> bool:
        row = await get_event(d.store, project, user_id, event["id"])
        return row is not None and row["version"] > event["version"]

    await until_visible(rewritten, d.settings.read_your_writes_timeout)
    return ok({"id": event["id"]})


@routes.delete("/api/v1/users/event/{user_id}/{event_id}")
async def delete_event(request: web.Request) -> web.Response:
    d, project, user_id, event_id = _event_ids(request)
    event = await _existing_event(d, project, user_id, event_id)
    gists = await gist_ids(d.store, project, user_id, event["id"])
    record = EventDeleted(project_id=project, user_id=user_id, user_event_id=event["id"], gist_ids=gists)
    await d.producer.send(d.settings.topic_ingest, record)

    async def gone() -> bool:
        return await get_event(d.store, project, user_id, event["id"]) is None

    await until_visible(gone, d.settings.read_your_writes_timeout)
    return ok()


@routes.get("/api/v1/users/event_tags/search/{user_id}")
async def search_by_tags(request: web.Request) -> web.Response:
    """Events with ALL of ``tags`` (any value) and ALL of ``tag_values`` (exact), newest first."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    tags = parse_tags(request.query.get("tags", ""))
    pairs = parse_tag_values(request.query.get("tag_values", ""))
    topk = params.integer(request, "topk", 10, low=1, high=MAX_TOPK)
    events = await events_with_tags(d.store, project, user_id, tags=tags, tag_pairs=pairs, topk=topk)
    return ok({"events": events})


@routes.get("/api/v1/users/event/search/{user_id}")
async def search(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    criteria = await _criteria(request, d)
    events = await search_events(d.store, project, user_id, **vars(criteria))
    return ok({"events": events, "search": _mode(criteria)})


@routes.get("/api/v1/users/event_gist/search/{user_id}")
async def search_gist(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    criteria = await _criteria(request, d)
    gists = await search_gists(d.store, project, user_id, criteria)
    return ok({"gists": gists, "search": _mode(criteria)})
