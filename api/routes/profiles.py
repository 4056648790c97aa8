"""Profiles: the user's slots (Memobase ``/api/v1/users/profile``), manual edits and slot history.

Edits are ``ProfileEdited`` commands on the ingest topic; the extract agent, which owns the
profile aggregate, applies them. Each edit answers once the slot's history shows the change
it made (bounded by ``read_your_writes_timeout``), so a read right after sees it, even when
the content did not change.
"""

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api import params
from api.deps import Deps, deps, project_of, until_visible
from api.endpoint import endpoint
from api.envelope import not_found, ok
from api.memory_params import MAX_COUNT, TopicsQuery
from api.models import Id
from api.profile_filters import select_profiles
from projections.history import change_recorded, slot_history
from projections.profiles import get_profile, list_profiles
from projections.users import get_user
from streams.events import ProfileEdited
from streams.profile import slot_id
from streams.slot_changes import normalise

routes = web.RouteTableDef()


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _one_name(value: str) -> str:
    if "::" in value:
        raise ValueError("must not contain '::' (it joins topic and sub_topic in a slot's key)")
    return value


# Slots are keyed "topic::sub_topic": a "::" inside a name would make two slots one.
Name = Annotated[Text, AfterValidator(_one_name), Field(json_schema_extra={"not": {"pattern": "::"}})]


class SlotName(BaseModel):
    model_config = ConfigDict(extra="ignore")
    topic: Name
    sub_topic: Name


class Attributes(BaseModel):
    topic: str
    sub_topic: str


class ProfileBody(BaseModel):
    """Memobase's profile body: ``{"content": …, "attributes": {"topic": …, "sub_topic": …}}``."""

    model_config = ConfigDict(extra="ignore")
    content: Text
    attributes: SlotName

    def slot(self) -> tuple[str, str]:
        """The slot's topic and sub_topic, normalised as the extract agent keys slots."""
        return normalise(self.attributes.topic), normalise(self.attributes.sub_topic)


class Slot(BaseModel):
    id: str
    content: str
    attributes: Attributes
    created_at: datetime
    updated_at: datetime


class SlotList(BaseModel):
    profiles: list[Slot]


class Change(BaseModel):
    profile_id: str
    change_id: str
    op: Literal["add", "update", "delete"]
    topic: str
    sub_topic: str
    content: str
    source: Literal["flush", "manual"]
    source_id: str
    at: datetime


class History(BaseModel):
    profile_id: str
    history: list[Change]


class ProfileQuery(TopicsQuery):
    topk: int | None = Field(None, ge=1, le=MAX_COUNT, description="most slots returned")
    max_token_size: int | None = Field(None, ge=1, le=MAX_COUNT, description="most tokens the slots' lines take together")


def profile_json(row: dict) -> dict:
    return {
        "id": row["id"],
        "content": row["content"],
        "attributes": {"topic": row["topic"], "sub_topic": row["sub_topic"]},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@routes.get("/api/v1/users/profile/{user_id}")
@endpoint("The user's profile slots", query=ProfileQuery, data=SlotList)
async def get_profile_list(request: web.Request, query: ProfileQuery) -> web.Response:
    """Slots filtered and ordered by ``api.profile_filters``; ``chats_str`` ranks those the chats are about first."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    spec = replace(
        query.profile_filter(), topk=query.topk, max_token_size=query.max_token_size,
        chats=tuple(m.content for m in query.chats()),
    )
    rows = select_profiles(await list_profiles(d.store, project, user_id), spec)
    return ok({"profiles": [profile_json(r) for r in rows]})


async def _edit(d: Deps, record: ProfileEdited, profile_id: str) -> None:
    """Send the edit, then wait until the slot's history shows the change it made to ``profile_id``."""
    await d.producer.send(d.settings.topic_ingest, record)

    async def recorded() -> bool:
        return await change_recorded(d.store, record.project_id, record.user_id, profile_id, record.event_id)

    await until_visible(recorded, d.settings.read_your_writes_timeout)


async def _existing(d: Deps, project: str, user_id: str, request: web.Request) -> dict[str, Any]:
    profile_id = params.path(request, "profile_id")
    row = await get_profile(d.store, project, user_id, profile_id)
    if row is None:
        raise not_found(f"profile {profile_id}")
    return row


@routes.post("/api/v1/users/profile/{user_id}")
@endpoint("Fill a profile slot", body=ProfileBody, data=Id)
async def add_profile(request: web.Request, body: ProfileBody) -> web.Response:
    """Fill ``topic::sub_topic``; an existing slot there is updated and keeps its id. The user must exist."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    topic, sub_topic = body.slot()
    profile_id = slot_id(project, user_id, topic, sub_topic)
    record = ProfileEdited(project_id=project, user_id=user_id, op="add", topic=topic, sub_topic=sub_topic, content=body.content)
    await _edit(d, record, profile_id)
    return ok({"id": profile_id})


@routes.put("/api/v1/users/profile/{user_id}/{profile_id}")
@endpoint("Rewrite or move a profile slot", body=ProfileBody, data=Id)
async def update_profile(request: web.Request, body: ProfileBody) -> web.Response:
    """Rewrite a slot; another topic/sub_topic moves it there, and its id becomes that slot's id."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    current = await _existing(d, project, user_id, request)
    topic, sub_topic = body.slot()
    record = ProfileEdited(
        project_id=project, user_id=user_id, op="update", profile_id=current["id"],
        topic=topic, sub_topic=sub_topic, content=body.content,
    )
    new_id = slot_id(project, user_id, topic, sub_topic)
    await _edit(d, record, new_id)  # a move deletes the old id first, in the same partition: seen by then
    return ok({"id": new_id})


@routes.delete("/api/v1/users/profile/{user_id}/{profile_id}")
@endpoint("Delete a profile slot")
async def delete_profile(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    current = await _existing(d, project, user_id, request)
    await _edit(d, ProfileEdited(project_id=project, user_id=user_id, op="delete", profile_id=current["id"]), current["id"])
    return ok()


@routes.get("/api/v1/users/profile/{user_id}/{profile_id}/history")
@endpoint("The changes of one profile slot, oldest first", data=History)
async def get_history(request: web.Request) -> web.Response:
    """``{"profile_id", "history": [{profile_id, change_id, op, topic, sub_topic, content, source, source_id, at}]}``.

    Oldest first. ``source`` is ``flush`` (``source_id`` = the flush id, which is also the
    flush's task id when it was requested) or ``manual`` (``source_id`` = the edit's event id).
    A slot moved here by an edit starts with its changes under its old id (``profile_id``
    tells them apart). A deleted slot keeps its history; one that never existed is errno 404.
    """
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    profile_id = params.path(request, "profile_id")
    changes = await slot_history(d.store, project, user_id, profile_id)
    if not changes:
        raise not_found(f"profile {profile_id}")
    return ok({"profile_id": profile_id, "history": [{k: v for k, v in c.items() if k != "version"} for c in changes]})
