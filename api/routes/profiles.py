"""Profiles: the user's slots (Memobase ``/api/v1/users/profile``), manual edits and slot history.

Edits are ``ProfileEdited`` commands on the ingest topic; the extract agent, which owns the
profile aggregate, applies them. Each edit answers once the slot's history shows the change
it made (bounded by ``read_your_writes_timeout``), so a read right after sees it, even when
the content did not change.
"""

from dataclasses import replace
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from api import memory_params, params
from api.deps import Deps, deps, project_of, until_visible
from api.envelope import not_found, ok
from api.profile_filters import select_profiles
from projections.history import change_recorded, slot_history
from projections.profiles import get_profile, list_profiles
from projections.users import get_user
from streams.events import ProfileEdited
from streams.profile import slot_id
from streams.slot_changes import normalise

routes = web.RouteTableDef()


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SlotName(BaseModel):
    model_config = ConfigDict(extra="ignore")
    topic: Text
    sub_topic: Text


class ProfileBody(BaseModel):
    """Memobase's profile body: ``{"content": …, "attributes": {"topic": …, "sub_topic": …}}``."""

    model_config = ConfigDict(extra="ignore")
    content: Text
    attributes: SlotName

    def slot(self) -> tuple[str, str]:
        """The slot's topic and sub_topic, normalised as the extract agent keys slots."""
        return normalise(self.attributes.topic), normalise(self.attributes.sub_topic)


def profile_json(row: dict) -> dict:
    return {
        "id": row["id"],
        "content": row["content"],
        "attributes": {"topic": row["topic"], "sub_topic": row["sub_topic"]},
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@routes.get("/api/v1/users/profile/{user_id}")
async def get_profile_list(request: web.Request) -> web.Response:
    """Slots filtered and ordered by ``api.profile_filters``; ``chats_str`` ranks those the chats are about first."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    spec = replace(
        memory_params.profile_filter(request),
        topk=params.integer(request, "topk", 0, low=1) or None,
        max_token_size=params.integer(request, "max_token_size", 0, low=1) or None,
        chats=tuple(m.content for m in memory_params.chats(request)),
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
    profile_id = params.uuid_param(request, "profile_id")
    row = await get_profile(d.store, project, user_id, profile_id)
    if row is None:
        raise not_found(f"profile {profile_id}")
    return row


@routes.post("/api/v1/users/profile/{user_id}")
async def add_profile(request: web.Request) -> web.Response:
    """Fill ``topic::sub_topic``; an existing slot there is updated and keeps its id. The user must exist."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    body = await params.body(request, ProfileBody)
    if await get_user(d.store, project, user_id) is None:
        raise not_found(f"user {user_id}")
    topic, sub_topic = body.slot()
    profile_id = slot_id(project, user_id, topic, sub_topic)
    record = ProfileEdited(project_id=project, user_id=user_id, op="add", topic=topic, sub_topic=sub_topic, content=body.content)
    await _edit(d, record, profile_id)
    return ok({"id": profile_id})


@routes.put("/api/v1/users/profile/{user_id}/{profile_id}")
async def update_profile(request: web.Request) -> web.Response:
    """Rewrite a slot; another topic/sub_topic moves it there, and its id becomes that slot's id."""
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    body = await params.body(request, ProfileBody)
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
async def delete_profile(request: web.Request) -> web.Response:
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    current = await _existing(d, project, user_id, request)
    await _edit(d, ProfileEdited(project_id=project, user_id=user_id, op="delete", profile_id=current["id"]), current["id"])
    return ok()


@routes.get("/api/v1/users/profile/{user_id}/{profile_id}/history")
async def get_history(request: web.Request) -> web.Response:
    """``{"profile_id", "history": [{profile_id, change_id, op, topic, sub_topic, content, source, source_id, at}]}``.

    Oldest first. ``source`` is ``flush`` (``source_id`` = the flush id, which is also the
    flush's task id when it was requested) or ``manual`` (``source_id`` = the edit's event id).
    A slot moved here by an edit starts with its changes under its old id (``profile_id``
    tells them apart). A deleted slot keeps its history; one that never existed is errno 404.
    """
    d, project, user_id = deps(request), project_of(request), params.user_id(request)
    profile_id = params.uuid_param(request, "profile_id")
    changes = await slot_history(d.store, project, user_id, profile_id)
    if not changes:
        raise not_found(f"profile {profile_id}")
    return ok({"profile_id": profile_id, "history": [{k: v for k, v in c.items() if k != "version"} for c in changes]})
