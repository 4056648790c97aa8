"""Extract agent: the owner of each user's profile aggregate and of event (re)writes.

    memstream.flushes ──▶ extract agent ──▶ memstream.memory
      BufferFlushed        LLM (project config) → ProfileSlotChanged*, EventRecorded (+ gists,
                           embeddings), UsageRecorded, TaskFinished
      ProfileEdited        manual slot edit     → ProfileSlotChanged* (source "manual")
      EventEdited          event rewrite        → EventRecorded (same event id, new gists)
      UserDeleted          forget the aggregate

The profile aggregate lives in a Faust Table keyed like the flushes topic, folded with
``streams.profile.apply`` from the very ``ProfileSlotChanged`` records it emits; flushes and
edits of one user arrive in one partition, in order, so they are applied one after the other
and no ClickHouse read sits on this path. The table also keeps the ids of the last records
applied (``streams.profile.UserProfile``), so one read again after a restart is skipped, not
extracted again; only a flush that succeeded counts as applied, so one replayed from the dead
letters is extracted. A UserDeleted empties the slots and keeps the ids.

A failed LLM or embedding call is retried with exponential backoff; after the last attempt the
record goes to the dead-letter topic unchanged (it can be replayed) and a flush's tasks end
``failed``. Every id emitted is derived from the incoming record's id, so a replay is idempotent.
"""

import asyncio
import logging
from typing import Any, Awaitable, Callable, TypeVar

import faust

from memstream.settings import Settings
from streams.embeddings import Embedder, EmbeddingFailed
from streams.events import (
    BufferFlushed,
    ChatMessage,
    ChatModalResponse,
    EventData,
    EventEdited,
    EventRecorded,
    EventTag,
    ProfileDelta,
    ProfileEdited,
    ProfileSlotChanged,
    Record,
    TaskFinished,
    UsageRecorded,
    UserDeleted,
    decode,
    derived_id,
)
from streams.extraction import Extraction, ExtractionFailed, Extractor, Usage
from streams.gaps import Gaps
from streams.gists import searchable
from streams.profile import Profile, UserProfile, apply
from streams.project_config import ProjectConfig
from streams.projects import ProjectDirectory
from streams.slot_changes import plan_changes, plan_edit
from streams.topics import Outbox, Topics, dead_letter_on_error, publish

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRIED = (ExtractionFailed, EmbeddingFailed)


def chats_of(flushed: BufferFlushed) -> list[ChatMessage]:
    """The window's messages in order, each stamped with its blob's time when it has none."""
    return [
        m if m.created_at else m.model_copy(update={"created_at": blob.created_at.isoformat()})
        for blob in flushed.blobs
        for m in blob.messages
    ]


def summarize(changes: list[ProfileSlotChanged], event_id: str) -> ChatModalResponse:
    def ids(op: str) -> list[str]:
        return list(dict.fromkeys(c.profile_id for c in changes if c.op == op))

    return ChatModalResponse(
        event_id=event_id, add_profiles=ids("add"), update_profiles=ids("update"), delete_profiles=ids("delete")
    )


def keep_tags(tags: list[EventTag], config: ProjectConfig) -> list[EventTag]:
    """The tags the project configured, each once (its first non-empty value); none without a config."""
    names = {spec.name for spec in config.event_tags}
    kept: dict[str, EventTag] = {}
    for tag in tags:
        name, value = tag.tag.strip(), tag.value.strip()
        if name in names and value and name not in kept:
            kept[name] = EventTag(tag=name, value=value)
    return list(kept.values())


def event_data(changes: list[ProfileSlotChanged], extraction: Extraction, config: ProjectConfig) -> EventData:
    return EventData(
        profile_delta=[
            ProfileDelta(content=c.content, attributes={"topic": c.topic, "sub_topic": c.sub_topic})
            for c in changes
            if c.op != "delete"
        ],
        event_tip=extraction.event_tip or None,
        event_tags=keep_tags(extraction.event_tags, config) or None,
    )


async def retrying(settings: Settings, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call`` under the flush policy: ``llm_max_attempts`` tries, the delay doubling from
    ``llm_backoff``. LLM and embedding failures are retried alike; the last one propagates."""
    delay = settings.llm_backoff
    for attempt in range(1, settings.llm_max_attempts + 1):
        try:
            return await call()
        except RETRIED as exc:
            if attempt == settings.llm_max_attempts:
                raise
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable: the loop returns or raises")


def usage_recorded(flushed: BufferFlushed, usage: Usage, processing: str) -> UsageRecorded:
    """The tokens one processing of a flush spent. ``processing`` names the flushes-topic record
    (partition:offset), so a flush replayed from the dead letters is billed again, while the same
    record processed twice after a crash is not."""
    return UsageRecorded(
        project_id=flushed.project_id,
        user_id=flushed.user_id,
        event_id=derived_id(flushed.flush_id, "usage", processing),
        source_id=flushed.flush_id,
        **usage.model_dump(),  # model, calls, input_tokens, output_tokens
    )


def register(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    extractor: Extractor,
    embedder: Embedder | None,
    directory: ProjectDirectory,
    gaps: Gaps,
) -> None:
    profiles = app.Table("profiles", default=None, partitions=settings.topic_partitions)

    def current(record: Record) -> UserProfile:
        return UserProfile.from_json(profiles.get(record.key.decode()))

    async def send_changes(outbox: Outbox, slots: Profile, changes: list[ProfileSlotChanged]) -> Profile:
        """Send ``changes``; the slots they fold into."""
        for change in changes:
            slots = apply(slots, change)
            await outbox.send(topics.memory, change)
        return slots

    async def keep(record: Record, state: UserProfile, slots: Profile, outbox: Outbox) -> None:
        """``record`` is applied: once the broker has what it caused, keep the slots it left and its
        id, so a record skipped as applied has nothing left to send."""
        await outbox.delivered()
        profiles[record.key.decode()] = state.after(slots, record).to_json()

    async def searchable_event(cause: Record, event_id: str, data: EventData, id_base: str, **fields: Any) -> EventRecorded:
        embedding, gists = await retrying(
            settings, f"embedding event {event_id}", lambda: searchable(data, id_base, embedder)
        )
        return EventRecorded(
            project_id=cause.project_id, user_id=cause.user_id, event_id=event_id, event_data=data,
            embedding=embedding, gists=gists, **fields,
        )

    async def park(record: Record, raw: bytes, error: Exception) -> None:
        log.error("%s %s failed for good, sent to dead letters: %s", type(record).__name__, record.event_id, error)
        await topics.dead_letter.send(key=record.key, value=raw, headers={"error": str(error).encode()})

    def task_finished(flushed: BufferFlushed, **outcome: object) -> TaskFinished:
        blob_ids = [b.blob_id for b in flushed.blobs]
        return TaskFinished.of(flushed, flushed.flush_id, flushed.blob_type, flushed.task_ids, blob_ids, **outcome)

    async def on_flush(flushed: BufferFlushed, raw: bytes, processing: str) -> None:
        state = current(flushed)
        if state.has_applied(flushed):
            log.info("flush %s was applied before the restart; not extracted again", flushed.flush_id)
            return
        await directory.catch_up()  # a config acknowledged before this flush is the one used
        config = directory.config(flushed.project_id)
        profile = state.slots
        chats = chats_of(flushed)
        spent = Usage()

        async def extract_once() -> Extraction:
            nonlocal spent
            try:
                extraction = await extractor.extract(chats, profile, config)
            except ExtractionFailed as exc:
                spent += exc.usage
                raise
            spent += extraction.usage
            return extraction

        event_id = derived_id(flushed.flush_id, "event")
        try:
            extraction = await retrying(settings, f"flush {flushed.flush_id}", extract_once)
            changes = plan_changes(flushed, extraction, profile, config)
            data = event_data(changes, extraction, config)
            event = await searchable_event(
                flushed, event_id, data, event_id, user_event_id=event_id, flush_id=flushed.flush_id
            )
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the flush's tasks must end, visibly
            await park(flushed, raw, exc)
            await publish(topics.memory, task_finished(flushed, status="failed", error=str(exc)))
            return
        finally:
            if spent.calls:  # tokens of failed attempts are spent too
                await publish(topics.memory, usage_recorded(flushed, spent, processing))
        outbox = Outbox()
        slots = await send_changes(outbox, profile, changes)
        await outbox.send(topics.memory, event)
        await outbox.send(topics.memory, task_finished(flushed, status="completed", results=[summarize(changes, event_id)]))
        await keep(flushed, state, slots, outbox)

    async def on_event_edit(edit: EventEdited, raw: bytes) -> None:
        try:
            event = await searchable_event(
                edit, derived_id(edit.event_id, "event"), edit.event_data, edit.event_id,
                user_event_id=edit.user_event_id, flush_id=edit.event_id,
                retired_gist_ids=edit.gist_ids, created_at=edit.created_at,
            )
        except EmbeddingFailed as exc:
            await park(edit, raw, exc)
            return
        await publish(topics.memory, event)

    @app.agent(topics.flushes, name="extract")
    async def extract_agent(stream: faust.StreamT) -> None:
        async for delivered in gaps.delivered(stream):
            async with dead_letter_on_error(topics, delivered):
                record = decode(delivered.value)
                if isinstance(record, BufferFlushed):
                    await on_flush(record, delivered.value, f"{delivered.partition}:{delivered.offset}")
                elif isinstance(record, ProfileEdited):
                    state = current(record)
                    if not state.has_applied(record):
                        outbox = Outbox()
                        await keep(record, state, await send_changes(outbox, state.slots, plan_edit(record, state.slots)), outbox)
                elif isinstance(record, EventEdited):
                    await on_event_edit(record, delivered.value)
                elif isinstance(record, UserDeleted) and not (state := current(record)).has_applied(record):
                    await keep(record, state, {}, Outbox())
