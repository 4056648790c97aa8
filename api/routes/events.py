"""Events: the user's timeline (Memobase ``/api/v1/users/event``), its edits, and searching it.

Edits and deletes go through the log like every change: the API sends ``EventEdited`` /
``EventDeleted`` to the ingest topic (the extract agent re-embeds an edited event), then waits,
at most ``read_your_writes_timeout``, until the events projection shows the result.

Search is semantic when an embedder is configured and lexical otherwise (or when embedding the
query fails); ``data.search`` says which ran, each item's ``similarity`` holds its score.
"""

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api import params
from api.deps import Deps, edit_readable, project_of, settled
from api.endpoint import endpoint
from api.envelope import invalid, not_found, ok, utc
from api.models import Event, EventList, Id, bounded
from api.query_embedding import query_embedding
from projections.events import event_text, events_with_tags, get_event, gist_ids, recent_events, recent_gists
from projections.search import Criteria, search_events, search_gists
from projections.store import Row
from streams.records import EventData, EventDeleted, EventEdited, EventTag, ProfileDelta
from streams.tokens import count_tokens

routes = web.RouteTableDef()

MAX_TOPK = 1000
MAX_DAYS = 36500


def _text_values(attributes: Any) -> Any:
    """Attributes as stored (text values); a null value is left out. What is not a map is left for
    validation to refuse."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        return attributes
    return {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in attributes.items()
        if value is not None
    }


class PatchDelta(ProfileDelta):
    """A ``profile_delta`` item as the Memobase SDK allows it: ``attributes`` may be null or hold
    non-text values (stored as their JSON text)."""

    attributes: Annotated[dict[str, str], BeforeValidator(_text_values)] = {}


class EventPatch(BaseModel):
    """The ``event_data`` fields a PUT may set; a field left out keeps its stored value. Other keys
    (a whole event dumped back, say) are ignored, as Memobase's server does."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_tip: str | None = None
    event_tags: list[EventTag] | None = None
    profile_delta: list[PatchDelta] | None = None


def merge(stored: EventData, patch: EventPatch) -> EventData:
    """Merge at the top level, as Memobase does: each field the patch sets replaces the stored one whole
    (``event_tags: []``, ``event_tip: null`` or ``profile_delta: null`` clear them); fields it leaves
    out survive."""
    changes = patch.model_dump(exclude_unset=True)
    if "profile_delta" in changes and changes["profile_delta"] is None:
        changes["profile_delta"] = []
    return EventData.model_validate({**stored.model_dump(), **changes})


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


async def _event_ids(request: web.Request) -> tuple[Deps, str, str, str]:
    user_id = params.user_id(request)
    return await settled(request, user_id), project_of(request), user_id, params.path(request, "event_id")


async def _existing_event(d: Deps, project: str, user_id: str, event_id: str) -> Row:
    event = await get_event(d.store, project, user_id, event_id)
    if event is None:
        raise not_found(f"event {event_id}")
    return event


Topk = Annotated[int, Field(ge=1, le=MAX_TOPK, description="most items returned")]
Days = Annotated[int, Field(ge=1, le=MAX_DAYS, description="only items from the last this many days")]


class EventsQuery(BaseModel):
    topk: Topk = 10
    max_token_size: int | None = Field(
        None, ge=0, le=1_000_000, description="most tokens the events' texts take together; 0 or unset: no limit"
    )
    time_range_in_days: Days | None = None
    need_summary: bool = Field(False, description="only events that have a summary (event_tip)")


class TagsQuery(BaseModel):
    tags: str = Field("", description="comma-separated tags the events must all have (any value)")
    tag_values: str = Field("", description="comma-separated tag=value pairs the events must all have")
    topk: Topk = 10


class SearchQuery(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    query: str = Field(pattern=r"\S", description="the text to search for")
    topk: Topk = 10
    similarity_threshold: float = Field(0.2, ge=0, le=1, description="lowest similarity returned")
    time_range_in_days: Days = 180


class FoundEvent(Event):
    similarity: float


class FoundEvents(BaseModel):
    events: list[FoundEvent]
    search: Literal["semantic", "lexical"]


class GistData(BaseModel):
    content: str


class Gist(BaseModel):
    id: str
    event_id: str
    gist_data: GistData
    created_at: datetime
    updated_at: datetime
    similarity: float


class TimelineGist(BaseModel):
    id: str
    event_id: str
    gist_data: GistData
    created_at: datetime


class TimelineGists(BaseModel):
    gists: list[TimelineGist]


class GistsQuery(BaseModel):
    topk: Topk = 100


class FoundGists(BaseModel):
    gists: list[Gist]
    events: list[Gist] = Field(description="the same gists: Memobase's JavaScript SDK (0.0.18) reads them here")
    search: Literal["semantic", "lexical"]


async def _criteria(d: Deps, query: SearchQuery) -> Criteria:
    text = query.query.strip()
    return Criteria(
        text, await query_embedding(d, text), query.topk, query.similarity_threshold, query.time_range_in_days
    )


def _mode(criteria: Criteria) -> str:
    return "lexical" if criteria.query_embedding is None else "semantic"


@routes.get("/api/v1/users/event/{user_id}")
@endpoint("The user's events, newest first", query=EventsQuery, data=EventList)
async def get_events(request: web.Request, query: EventsQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    events = await recent_events(
        d.store,
        project,
        user_id,
        query.topk,
        time_range_in_days=query.time_range_in_days,
        need_summary=query.need_summary,
    )
    return ok({"events": within_tokens(events, query.max_token_size) if query.max_token_size else events})


@routes.put("/api/v1/users/event/{user_id}/{event_id}")
@endpoint("Merge fields into an event's event_data", body=EventPatch, data=Id)
async def update_event(request: web.Request, body: EventPatch) -> web.Response:
    d, project, user_id, event_id = await _event_ids(request)
    event = await _existing_event(d, project, user_id, event_id)
    record = EventEdited(
        project_id=project,
        user_id=user_id,
        event_id=event["id"],
        event_data=merge(EventData.model_validate(event["event_data"]), body),
        created_at=utc(event["created_at"]),
        gist_ids=await gist_ids(d.store, project, user_id, event["id"]),
    )
    await edit_readable(d, bounded(record, d.settings.limits()), f"the update of event {event_id}")
    return ok({"id": event["id"]})


@routes.delete("/api/v1/users/event/{user_id}/{event_id}")
@endpoint("Delete an event (errno 404 when there is no such event)")
async def delete_event(request: web.Request) -> web.Response:
    d, project, user_id, event_id = await _event_ids(request)
    event = await _existing_event(d, project, user_id, event_id)
    await forget_event(d, project, user_id, event["id"])
    return ok()


async def forget_event(d: Deps, project: str, user_id: str, event_id: str) -> None:
    """Delete an event (the id of a live one) and its gists; returns once they are gone."""
    gists = await gist_ids(d.store, project, user_id, event_id)
    record = EventDeleted(project_id=project, user_id=user_id, event_id=event_id, gist_ids=gists)
    await edit_readable(d, record, f"the delete of event {event_id}")


@routes.get("/api/v1/users/event_tags/search/{user_id}")
@endpoint("Events having all the tags and tag=value pairs, newest first", query=TagsQuery, data=EventList)
async def search_by_tags(request: web.Request, query: TagsQuery) -> web.Response:
    """Events with ALL of ``tags`` (any value) and ALL of ``tag_values`` (exact), newest first."""
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    tags, pairs = parse_tags(query.tags), parse_tag_values(query.tag_values)
    events = await events_with_tags(d.store, project, user_id, tags=tags, tag_pairs=pairs, topk=query.topk)
    return ok({"events": events})


@routes.get("/api/v1/users/event/search/{user_id}")
@endpoint("Search the user's events, best match first", query=SearchQuery, data=FoundEvents)
async def search(request: web.Request, query: SearchQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    criteria = await _criteria(d, query)
    events = await search_events(d.store, project, user_id, **vars(criteria))
    return ok({"events": events, "search": _mode(criteria)})


@routes.get("/api/v1/users/event_gist/search/{user_id}")
@endpoint("Search the user's event gists, best match first", query=SearchQuery, data=FoundGists)
async def search_gist(request: web.Request, query: SearchQuery) -> web.Response:
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    criteria = await _criteria(d, query)
    gists = await search_gists(d.store, project, user_id, criteria)
    return ok({"gists": gists, "events": gists, "search": _mode(criteria)})


@routes.get("/api/v1/users/event_gist/{user_id}")
@endpoint("The user's event gists, newest first (a Memstream extension)", query=GistsQuery, data=TimelineGists)
async def get_gists(request: web.Request, query: GistsQuery) -> web.Response:
    """The searchable lines of the user's events without a search: what the inspector's timeline shows."""
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    rows = await recent_gists(d.store, project, user_id, query.topk)
    return ok({"gists": [{**row, "gist_data": {"content": row.pop("content")}} for row in rows]})
