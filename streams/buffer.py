"""Buffer agent: per-user, per-blob-type windows over the ingest topic.

    blobs ─┬─ b1 ─ b2 ─ b3 ─┐ flush (size ≥ max tokens) ─▶ BufferFlushed(size)
           │                └ …idle ≥ buffer_flush_interval ─▶ timer asks ─▶ BufferFlushed(idle)
           └ FlushRequested ───────────────────────────────────────────────▶ BufferFlushed(request)

Every decision is taken in the agent, in partition order, so a flush request is always seen
after the blobs it must cover. The idle timer never writes the table (Faust tables change
only inside a stream); it sends a ``FlushRequested(reason="idle")`` to the ingest topic,
whose task id is derived from the buffer's last blob, and the agent flushes only if that
blob is still the last one.

Processing is at least once: a record read again after a restart or a rebalance is applied
again. The extract agent skips a flush it has applied (same trigger, same blobs), so the blobs a
flush took already are not extracted twice by it.
"""

import logging
import time
from typing import Any

import faust
from faust.types import TP

from memstream.settings import Settings
from streams.events import (
    BUFFERED_BLOB_TYPES,
    BlobBuffered,
    BlobDeleted,
    BlobInserted,
    BlobType,
    BufferedBlob,
    BufferFlushed,
    ChatMessage,
    EventEdited,
    FlushRequested,
    ProfileEdited,
    Record,
    TaskFinished,
    UserDeleted,
    decode,
    derived_id,
)
from streams.gaps import Gaps
from streams.tokens import count_tokens
from streams.topics import Topics, dead_letter_on_error, publish

log = logging.getLogger(__name__)

State = dict[str, Any]  # JSON kept in the Faust table: project_id, user_id, partition, tokens, last_at, blobs


def buffer_key(project_id: str, user_id: str, blob_type: str) -> str:
    return f"{project_id}:{user_id}:{blob_type}"


def idle_task_id(state: State) -> str:
    return derived_id("idle", state["blobs"][-1]["task_id"])


def blob_tokens(messages: list[ChatMessage]) -> int:
    return sum(count_tokens(m.content) for m in messages)


def register(app: faust.App, topics: Topics, settings: Settings, gaps: Gaps) -> None:
    buffers = app.Table("buffers", default=None, partitions=settings.topic_partitions)
    idle_requested: dict[str, str] = {}  # buffer key → idle task id already sent by this worker

    def open_buffer(key: str) -> State | None:
        """Buffer ``key`` if it holds blobs. (A value written before 496c156 may be ``{"offset": n}``:
        an emptied buffer then.)"""
        state = buffers.get(key)
        return state if state and state.get("blobs") else None

    async def finish(record: Record, blob_type: BlobType, task_ids: list[str], blob_ids: list[str], flush_id: str) -> None:
        await publish(topics.memory, TaskFinished.of(record, flush_id, blob_type, task_ids, blob_ids, status="completed"))

    async def flush(record: Record, key: str, state: State, flush_id: str, reason: str, extra_tasks: list[str]) -> None:
        blobs = [BufferedBlob.model_validate(b) for b in state["blobs"]]
        flushed = BufferFlushed(
            project_id=record.project_id,
            user_id=record.user_id,
            event_id=derived_id(flush_id, "flushed"),
            flush_id=flush_id,
            blob_type=BlobType(key.rsplit(":", 1)[1]),
            reason=reason,
            blobs=blobs,
            task_ids=[b.task_id for b in blobs] + extra_tasks,
        )
        buffers.pop(key, None)
        idle_requested.pop(key, None)
        await publish(topics.flushes, flushed)

    async def on_blob(record: BlobInserted, partition: int) -> None:
        if record.blob_type not in BUFFERED_BLOB_TYPES:
            # Stored only: nothing to extract, so its task is done as soon as it is accepted.
            await publish(topics.memory, _buffered(record, None))
            await finish(record, record.blob_type, [record.task_id], [record.blob_id], record.task_id)
            return
        key = buffer_key(record.project_id, record.user_id, record.blob_type)
        messages = [ChatMessage.model_validate(m) for m in record.blob_data.get("messages", [])]
        state: State = open_buffer(key) or {
            "project_id": record.project_id,
            "user_id": record.user_id,
            "partition": partition,
            "tokens": 0,
            "blobs": [],
        }
        blob = BufferedBlob(blob_id=record.blob_id, task_id=record.task_id, created_at=record.created_at, messages=messages)
        state = {
            **state,
            "tokens": state["tokens"] + blob_tokens(messages),
            "last_at": record.occurred_at.timestamp(),
            "blobs": [*state["blobs"], blob.model_dump(mode="json")],
        }
        if state["tokens"] >= settings.max_chat_blob_buffer_token_size:
            flush_id = derived_id("size", record.task_id)
            await publish(topics.memory, _buffered(record, flush_id))
            await flush(record, key, state, flush_id, "size", [])
        else:
            buffers[key] = state
            await publish(topics.memory, _buffered(record, None))

    async def on_flush_request(record: FlushRequested) -> None:
        key = buffer_key(record.project_id, record.user_id, record.blob_type)
        state = open_buffer(key)
        if record.reason == "idle":
            if state and idle_task_id(state) == record.task_id:
                await flush(record, key, state, record.task_id, "idle", [])
            return
        if state:
            await flush(record, key, state, record.task_id, "request", [record.task_id])
        else:
            await finish(record, record.blob_type, [record.task_id], [], record.task_id)

    async def on_blob_deleted(record: BlobDeleted) -> None:
        for blob_type in BUFFERED_BLOB_TYPES:
            key = buffer_key(record.project_id, record.user_id, blob_type)
            state = open_buffer(key)
            if not state:
                continue
            gone = [b for b in state["blobs"] if b["blob_id"] == record.blob_id]
            if not gone:
                continue
            kept = [b for b in state["blobs"] if b["blob_id"] != record.blob_id]
            tokens = sum(blob_tokens([ChatMessage.model_validate(m) for m in b["messages"]]) for b in kept)
            buffers[key] = {**state, "blobs": kept, "tokens": tokens}
            await finish(record, blob_type, [gone[0]["task_id"]], [record.blob_id], gone[0]["task_id"])

    async def on_user_deleted(record: UserDeleted) -> None:
        for blob_type in BUFFERED_BLOB_TYPES:
            key = buffer_key(record.project_id, record.user_id, blob_type)
            state = open_buffer(key)
            buffers.pop(key, None)
            if state:
                ids = [b["task_id"] for b in state["blobs"]]
                flush_id = derived_id("user-deleted", record.event_id)
                await finish(record, blob_type, ids, [b["blob_id"] for b in state["blobs"]], flush_id)
        await publish(topics.flushes, record)  # the extractor forgets the profile too

    async def handle(raw: bytes, partition: int) -> None:
        record = decode(raw)
        if isinstance(record, BlobInserted):
            await on_blob(record, partition)
        elif isinstance(record, FlushRequested):
            await on_flush_request(record)
        elif isinstance(record, BlobDeleted):
            await on_blob_deleted(record)
        elif isinstance(record, UserDeleted):
            await on_user_deleted(record)
        elif isinstance(record, (ProfileEdited, EventEdited)):
            await publish(topics.flushes, record)  # the extract agent owns profiles and event rewrites

    @app.agent(topics.ingest, name="buffer")
    async def buffer_agent(stream: faust.StreamT) -> None:
        async for delivered in gaps.delivered(stream):
            async with dead_letter_on_error(topics, delivered):
                await handle(delivered.value, delivered.partition)

    check_every = max(0.1, min(settings.buffer_flush_interval / 4, 30.0))

    @app.timer(check_every, name="idle_flush")
    async def idle_flush() -> None:
        now = time.time()
        owned = app.assignor.assigned_actives()
        for key, state in list(buffers.items()):
            if not state or not state.get("blobs") or now - state["last_at"] < settings.buffer_flush_interval:
                continue
            if TP(settings.topic_ingest, state["partition"]) not in owned:
                continue
            task_id = idle_task_id(state)
            if idle_requested.get(key) == task_id:
                continue
            idle_requested[key] = task_id
            request = FlushRequested(
                project_id=state["project_id"],
                user_id=state["user_id"],
                blob_type=BlobType(key.rsplit(":", 1)[1]),
                task_id=task_id,
                reason="idle",
            )
            log.info("buffer %s idle for %.0fs: requesting a flush", key, now - state["last_at"])
            await publish(topics.ingest, request)


def _buffered(record: BlobInserted, flush_id: str | None) -> BlobBuffered:
    return BlobBuffered(
        project_id=record.project_id,
        user_id=record.user_id,
        event_id=derived_id(record.event_id, "buffered"),
        blob_id=record.blob_id,
        task_id=record.task_id,
        blob_type=record.blob_type,
        flush_id=flush_id,
    )
