"""Profiles: the user's slots (Memobase ``/api/v1/users/profile``), manual edits and slot history.

Edits are ``ProfileEdited`` commands on the ingest topic; the owner applies them in the user's
turn (after an extraction under way) and says so (``EditApplied``). Each edit answers once
ClickHouse holds that (bounded by ``MEMSTREAM_READ_YOUR_WRITES_TIMEOUT``, else errno 504), so a
read right after sees it.
"""

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api import params
from api.deps import Deps, edit_readable, project_of, settled
from api.endpoint import endpoint
from api.envelope import not_found, ok, ok_encoded
from api.memory_params import MAX_COUNT, TopicsQuery
from api.models import Id, bounded
from api.profile_filters import select_profiles
from projections.history import slot_history
from projections.profiles import get_profile
from projections.users import get_user
from streams.records import EditApplied, ProfileEdited
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
    max_token_size: int | None = Field(
        None, ge=0, le=MAX_COUNT, description="most tokens the slots' lines take together; 0 or unset: no limit"
    )


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
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    spec = replace(
        query.profile_filter(),
        topk=query.topk,
        max_token_size=query.max_token_size or None,
        chats=tuple(m.content for m in query.chats()),
    )

    async def make() -> dict[str, list[dict]]:
        rows = select_profiles(await d.reads.slots(project, user_id), spec)
        return {"profiles": [profile_json(r) for r in rows]}

    return ok_encoded(await d.reads.answer(project, user_id, "profile", query, make))


async def _edit(d: Deps, record: ProfileEdited, what: str) -> EditApplied:
    """Send the edit (in the user's turn: after an extraction under way), return once it is readable."""
    return await edit_readable(d, bounded(record, d.settings.limits()), what)


async def _existing(d: Deps, project: str, user_id: str, profile_id: str) -> dict[str, Any]:
    row = await get_profile(d.store, project, user_id, profile_id)
    if row is None:
        raise not_found(f"profile {profile_id}")
    return row


@routes.post("/api/v1/users/profile/{user_id}")
@endpoint("Fill a profile slot", body=ProfileBody, data=Id)
async def add_profile(request: web.Request, body: ProfileBody) -> web.Response:
    """Fill ``topic::sub_topic``; an existing slot there is updated and keeps its id. The user must exist."""
    project, user_id = project_of(request), params.user_id(request)
    d = await settled(request, user_id)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    topic, sub_topic = body.slot()
    record = ProfileEdited(
        project_id=project, user_id=user_id, op="add", topic=topic, sub_topic=sub_topic, content=body.content
    )
    applied = await _edit(d, record, f"the slot {topic}::{sub_topic}")
    return ok({"id": applied.profile_ids[0]})


@routes.put("/api/v1/users/profile/{user_id}/{profile_id}")
@endpoint("Rewrite or move a profile slot", body=ProfileBody, data=Id)
async def update_profile(request: web.Request, body: ProfileBody) -> web.Response:
    """Rewrite a slot; another topic/sub_topic moves it there, keeping its id. Errno 404 for a slot
    that does not exist, or that an earlier edit deleted before this one's turn."""
    project, user_id = project_of(request), params.user_id(request)
    profile_id = params.path(request, "profile_id")
    d = await settled(request, user_id)
    await _existing(d, project, user_id, profile_id)
    topic, sub_topic = body.slot()
    record = ProfileEdited(
        project_id=project,
        user_id=user_id,
        op="update",
        profile_id=profile_id,
        topic=topic,
        sub_topic=sub_topic,
        content=body.content,
    )
    if (await _edit(d, record, f"the update of profile {profile_id}")).outcome == "ignored":
        raise not_found(f"profile {profile_id} (deleted before this update's turn)")
    return ok({"id": profile_id})


@routes.delete("/api/v1/users/profile/{user_id}/{profile_id}")
@endpoint("Delete a profile slot (errno 404 when there is no such slot)")
async def delete_profile(request: web.Request) -> web.Response:
    """Always sent (the slot may be under way); returns once it is gone."""
    project, user_id = project_of(request), params.user_id(request)
    profile_id = params.path(request, "profile_id")
    d = await settled(request, user_id)
    if not await forget_slot(d, project, user_id, profile_id):
        raise not_found(f"profile {profile_id}")
    return ok()


async def forget_slot(d: Deps, project: str, user_id: str, profile_id: str) -> bool:
    """Delete a slot in the user's turn; returns once it is gone, False when there was no such slot."""
    record = ProfileEdited(project_id=project, user_id=user_id, op="delete", profile_id=profile_id)
    return (await _edit(d, record, f"the delete of profile {profile_id}")).outcome != "ignored"


@routes.get("/api/v1/users/profile/{user_id}/{profile_id}/history")
@endpoint("The changes of one profile slot, oldest first", data=History)
async def get_history(request: web.Request) -> web.Response:
    """``{"profile_id", "history": [{profile_id, change_id, op, topic, sub_topic, content, source, source_id, at}]}``.

    Oldest first. ``source`` is ``flush`` (``source_id`` = the flush id, which is also the
    flush's task id when it was requested) or ``manual`` (``source_id`` = the edit's event id).
    A slot keeps its id (and its history) when an edit moves it to another topic/sub_topic. A
    deleted slot keeps its history; one that never existed is errno 404.
    """
    project, user_id = project_of(request), params.user_id(request)
    profile_id = params.path(request, "profile_id")
    d = await settled(request, user_id)
    changes = await slot_history(d.store, project, user_id, profile_id)
    if not changes:
        raise not_found(f"profile {profile_id}")
    return ok({"profile_id": profile_id, "history": [{k: v for k, v in c.items() if k != "version"} for c in changes]})
