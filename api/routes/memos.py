"""MemOS's product API (``/api/openmem/v1``), served over the same memory as the Memobase routes.

Auth is ``Authorization: Token <key>`` (``Bearer`` works too), with the same project and root
tokens; answers are MemOS's envelope ``{"code": 0, "data": …, "message": "ok"}``, errors carry
the errno of ``api.envelope`` as ``code`` at the same HTTP statuses. Bodies are strict JSON: a
field of the wrong type is a 422 naming it, never coerced.

Where MemOS leaves the semantics open, Memstream decides:

- **Users** are MemOS strings (letters, digits, ``._@-``, at most 128); a UUID is written in its
  canonical form, so the Memobase routes (UUID user ids only) reach the same user. A user exists
  from their first message on (no create call).
- **add/message**: the messages become one chat blob of the user; ``conversation_id``, ``tags`` and
  ``info`` are kept in the blob's ``fields``. Async (default) answers ``running`` once the broker has
  the blob; its task completes when the user's chat window is extracted (it fills, idles, or is
  flushed). ``async_mode=false`` then flushes the user's whole chat window (earlier async messages
  included) and answers ``completed`` once a read shows the extraction (errno 504 after
  ``MEMSTREAM_WAIT_TIMEOUT``, the task going on; 500 when the extraction failed).
- **Memory types**: ``WorkingMemory`` = a chat blob not extracted yet (one item per blob, the
  messages one ``role: content`` line each; its id is the blob id); ``LongTermMemory`` = an event
  (its tip and profile changes); ``UserMemory`` = a profile slot (key ``topic::sub_topic``).
  ``conversation_id`` is only known for working memory (extraction merges conversations), ``""``
  for the others. ``confidence`` is 1.0 (Memstream does not grade what it stores).
- **search/memory** answers at most ``memory_limit_number`` items *of each type*, working memory
  first (newest first, of ``conversation_id`` when given, shown whatever the query: it is what was
  just said), then events found by the event search (semantic with an embedder, else by words)
  best first, then profile slots sharing most words with the query first. ``relativity`` is the
  least score an event or slot must reach (default 0: every slot, and the events the search
  finds); each item's ``relativity`` is its score (for working memory and slots: the share of the
  query's content words found in it).
- **get/memory** pages (``page`` from 1, ``size`` ≤ 100, the first 10 000 items reachable) over
  working memory (newest first), then events (newest first), then slots (most recently updated
  first); ``total`` counts all three; ``relativity`` is null.
- **delete/memory**: ``memory_ids`` (slot, event or chat blob ids of the project; with ``user_id``
  too, only that user's) are deleted through the same commands as the Memobase routes; ids not
  found are listed, not an error. ``user_id`` alone deletes the user and all their memory.
"""

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from api.deps import Deps, deps, project_of, settled
from api.endpoint import endpoint
from api.envelope import invalid, memos_ok, utc
from api.models import ChatData, bounded, new_blob
from api.profile_filters import words
from api.query_embedding import query_embedding
from api.routes.blobs import forget_blob, insert_processed
from api.routes.buffer import flush_of, flush_processed
from api.routes.events import MAX_DAYS, forget_event
from api.routes.profiles import forget_slot
from api.routes.tasks import TaskRef, find_task
from api.routes.users import forget_user
from projections.events import count_events, event_text, recent_events
from projections.memories import Owned, owners_of
from projections.profiles import list_profiles
from projections.search import search_events
from projections.store import Row
from projections.working_memory import count_unprocessed_chats, unprocessed_chats
from streams.records import BlobType

routes = web.RouteTableDef()

PREFIX = "/api/openmem/v1"
WORKING_CANDIDATES = 100  # newest unprocessed chat blobs a search looks through (for its conversation)
MAX_ITEMS = 10_000  # deepest item get/memory pages reach
KEY_CHARS = 60


def _canonical(user_id: str) -> str:
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        return user_id


UserId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"),
    AfterValidator(_canonical),
    Field(description="the user: letters, digits and ._@- (at most 128); a UUID is the same user as in /api/v1"),
]
Short = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class Message(Body):
    role: Literal["user", "assistant"]
    content: str
    chat_time: str | None = Field(None, description="when it was said, as the client writes times")


class AddMessage(Body):
    user_id: UserId
    conversation_id: Short
    messages: list[Message] = Field(min_length=1)
    async_mode: bool = Field(True, description="false: answer once the extraction of the user's chats is done")
    tags: list[Annotated[str, StringConstraints(max_length=128)]] | None = Field(None, max_length=64)
    info: dict[str, Any] | None = None


class Added(BaseModel):
    success: bool
    task_id: str
    status: Literal["running", "completed"]


class SearchMemory(Body):
    user_id: UserId
    query: str = Field(pattern=r"\S", max_length=4000)
    conversation_id: Short | None = None
    memory_limit_number: int = Field(6, ge=1, le=100, description="most items of each memory type")
    relativity: float | None = Field(None, ge=0, le=1, description="least score of an event or profile slot")


class GetMemory(Body):
    user_id: UserId
    page: int = Field(1, ge=1, le=100, description="from 1")
    size: int = Field(10, ge=1, le=100)


class DeleteMemory(Body):
    memory_ids: list[Short] | None = Field(None, min_length=1, max_length=100)
    user_id: UserId | None = None


class MemoryItem(BaseModel):
    id: str
    memory_key: str
    memory_value: str
    memory_type: Literal["WorkingMemory", "LongTermMemory", "UserMemory"]
    create_time: int = Field(description="epoch milliseconds")
    update_time: int = Field(description="epoch milliseconds")
    conversation_id: str
    status: Literal["activated"]
    confidence: float
    relativity: float | None
    tags: list[str]


class Memories(BaseModel):
    memory_detail_list: list[MemoryItem]
    preference_detail_list: list[dict[str, Any]]


class MemoryPage(Memories):
    total: int
    page: int
    size: int


class Deleted(BaseModel):
    success: bool
    deleted_ids: list[str]
    not_found_ids: list[str]


class TaskState(BaseModel):
    task_id: str
    status: Literal["running", "completed", "failed"]


def _ms(at: datetime) -> int:
    return round(utc(at).timestamp() * 1000)


def _key(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= KEY_CHARS else line[: KEY_CHARS - 1] + "…"


def _share(query_words: set[str], text: str) -> float:
    """The share of the query's content words that ``text`` has (0 for a query without any)."""
    return round(len(query_words & words(text)) / len(query_words), 4) if query_words else 0.0


def _item(kind: str, row_id: str, key: str, value: str, created: datetime, updated: datetime, **more: Any) -> dict:
    return {
        "id": row_id,
        "memory_key": key,
        "memory_value": value,
        "memory_type": kind,
        "create_time": _ms(created),
        "update_time": _ms(updated),
        "conversation_id": more.get("conversation_id", ""),
        "status": "activated",
        "confidence": 1.0,
        "relativity": more.get("relativity"),
        "tags": more.get("tags", []),
    }


def working_item(blob: dict[str, Any], relativity: float | None = None) -> dict:
    fields = blob["fields"]
    text = "\n".join(f"{m['role']}: {m['content']}" for m in blob["messages"])
    first = blob["messages"][0]["content"] if blob["messages"] else ""
    tags = [t for t in fields.get("tags") or [] if isinstance(t, str)]
    conversation = fields.get("conversation_id")
    return _item(
        "WorkingMemory",
        blob["blob_id"],
        _key(first),
        text,
        blob["created_at"],
        blob["created_at"],
        conversation_id=conversation if isinstance(conversation, str) else "",
        relativity=relativity,
        tags=tags,
    )


def event_item(event: Row, relativity: float | None = None) -> dict:
    data = event["event_data"]
    tags = [f"{t['tag']}={t['value']}" for t in data.get("event_tags") or []]
    text = event_text(data)
    key = _key(data.get("event_tip") or text)
    return _item(
        "LongTermMemory",
        event["id"],
        key,
        text,
        event["created_at"],
        event["updated_at"],
        relativity=relativity,
        tags=tags,
    )


def slot_item(slot: Row, relativity: float | None = None) -> dict:
    key = f"{slot['topic']}::{slot['sub_topic']}"
    return _item(
        "UserMemory",
        slot["id"],
        key,
        slot["content"],
        slot["created_at"],
        slot["updated_at"],
        relativity=relativity,
        tags=[slot["topic"], slot["sub_topic"]],
    )


@routes.post(f"{PREFIX}/add/message")
@endpoint("Add a conversation's messages as a chat of the user", body=AddMessage, data=Added, memos=True)
async def add_message(request: web.Request, body: AddMessage) -> web.Response:
    d, project = deps(request), project_of(request)
    messages = ChatData.model_validate({"messages": [_chat_message(m) for m in body.messages]})
    fields: dict[str, Any] = {"conversation_id": body.conversation_id}
    fields.update({k: v for k, v in (("tags", body.tags), ("info", body.info)) if v})
    record = bounded(
        new_blob(project, body.user_id, BlobType.chat, messages.model_dump(mode="json", exclude_none=True), fields),
        d.settings.limits(),
    )
    if body.async_mode:
        await d.producer.send(d.settings.topic_ingest, record)
        return memos_ok({"success": True, "task_id": record.task_id, "status": "running"})
    timeout = d.settings.wait_timeout
    if await insert_processed(d, record, timeout) is None:  # it waits in the chat window: extract that now
        await flush_processed(d, flush_of(project, body.user_id, BlobType.chat), timeout)
    return memos_ok({"success": True, "task_id": record.task_id, "status": "completed"})


def _chat_message(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": message.content, "created_at": message.chat_time}


@routes.post(f"{PREFIX}/search/memory")
@endpoint(
    "The user's memories for a query: working, long-term and user memory", body=SearchMemory, data=Memories, memos=True
)
async def search_memory(request: web.Request, body: SearchMemory) -> web.Response:
    project, user_id = project_of(request), body.user_id
    d = await settled(request, user_id)
    limit, floor, text = body.memory_limit_number, body.relativity or 0.0, body.query.strip()
    embedding = await query_embedding(d, text)
    slots, events, working = await asyncio.gather(
        list_profiles(d.store, project, user_id),
        search_events(
            d.store,
            project,
            user_id,
            query=text,
            query_embedding=embedding,
            topk=limit,
            similarity_threshold=floor,
            time_range_in_days=MAX_DAYS,
        ),
        unprocessed_chats(d.store, project, user_id, WORKING_CANDIDATES),
    )
    query_words = words(text)
    if body.conversation_id is not None:
        working = [b for b in working if b["fields"].get("conversation_id") == body.conversation_id]
    working_items = [working_item(b, _share(query_words, _blob_text(b))) for b in reversed(working)][:limit]
    scored = [(_share(query_words, f"{s['topic']} {s['sub_topic']} {s['content']}"), s) for s in slots]
    scored = sorted((pair for pair in scored if pair[0] >= floor), key=lambda pair: -pair[0])[:limit]
    items = [
        *working_items,
        *(event_item(e, round(float(e["similarity"]), 4)) for e in events),
        *(slot_item(s, score) for score, s in scored),
    ]
    return memos_ok({"memory_detail_list": items, "preference_detail_list": []})


def _blob_text(blob: dict[str, Any]) -> str:
    return " ".join(m["content"] for m in blob["messages"])


@routes.post(f"{PREFIX}/get/memory")
@endpoint("A page of all the user's memories, with their total", body=GetMemory, data=MemoryPage, memos=True)
async def get_memory(request: web.Request, body: GetMemory) -> web.Response:
    project, user_id = project_of(request), body.user_id
    d = await settled(request, user_id)
    start = (body.page - 1) * body.size
    if start >= MAX_ITEMS:
        raise invalid(f"body.page: page × size reaches past the first {MAX_ITEMS} memories")
    need = start + body.size
    working, working_total, events, events_total, slots = await asyncio.gather(
        unprocessed_chats(d.store, project, user_id, need),
        count_unprocessed_chats(d.store, project, user_id),
        recent_events(d.store, project, user_id, need),
        count_events(d.store, project, user_id),
        list_profiles(d.store, project, user_id),
    )
    items = [*map(working_item, reversed(working)), *map(event_item, events), *map(slot_item, slots)]
    return memos_ok(
        {
            "memory_detail_list": items[start:need],
            "preference_detail_list": [],
            "total": working_total + events_total + len(slots),
            "page": body.page,
            "size": body.size,
        }
    )


async def _forget(d: Deps, project: str, memory: Owned) -> None:
    if memory.kind == "profile":
        await forget_slot(d, project, memory.user_id, memory.memory_id)
    elif memory.kind == "event":
        await forget_event(d, project, memory.user_id, memory.memory_id)
    else:
        await forget_blob(d, project, memory.user_id, memory.memory_id)


@routes.post(f"{PREFIX}/delete/memory")
@endpoint("Delete memories by id, or a user and all their memories", body=DeleteMemory, data=Deleted, memos=True)
async def delete_memory(request: web.Request, body: DeleteMemory) -> web.Response:
    project = project_of(request)
    if body.memory_ids is None:
        if body.user_id is None:
            raise invalid("body: give memory_ids (the memories to delete) or user_id (to delete the user)")
        await forget_user(await settled(request, body.user_id), project, body.user_id)
        return memos_ok({"success": True, "deleted_ids": [], "not_found_ids": []})
    d = await settled(request, body.user_id)
    wanted = list(dict.fromkeys(body.memory_ids))
    found = await owners_of(d.store, project, wanted, body.user_id)
    await asyncio.gather(*(_forget(d, project, memory) for memory in found))
    gone = {memory.memory_id for memory in found}
    return memos_ok(
        {
            "success": True,
            "deleted_ids": [i for i in wanted if i in gone],
            "not_found_ids": [i for i in wanted if i not in gone],
        }
    )


@routes.post(f"{PREFIX}/get/status")
@endpoint("A task's status: running, completed or failed", body=TaskRef, data=TaskState, memos=True)
async def get_status(request: web.Request, body: TaskRef) -> web.Response:
    task = await find_task(request, body.task_id)
    return memos_ok({"task_id": body.task_id, "status": task["status"]})
