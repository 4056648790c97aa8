"""Extract agent: one flushed window → profile slot changes + one event + the task's end.

The user's profile aggregate lives in a Faust Table keyed like the flushes topic, folded with
``streams.profile.apply`` from the very ``ProfileSlotChanged`` records it emits, so two flushes
of one user are processed one after the other and no ClickHouse read sits on this path.

A failed extraction is retried with exponential backoff; after the last attempt the flush goes
to the dead-letter topic unchanged (it can be replayed) and its tasks end ``failed``.
"""

import asyncio
import logging

import faust

from memstream.settings import Settings
from streams.events import (
    BufferFlushed,
    ChatMessage,
    ChatModalResponse,
    EventData,
    EventRecorded,
    ProfileDelta,
    ProfileSlotChanged,
    TaskFinished,
    UserDeleted,
    decode,
    derived_id,
)
from streams.embeddings import Embedder
from streams.extraction import Extraction, ExtractionFailed, Extractor
from streams.profile import Profile, apply, from_json, slot_id, slot_key, to_json
from streams.projects import ProjectDirectory
from streams.topics import Topics, dead_letter_on_error, publish

log = logging.getLogger(__name__)


def chats_of(flushed: BufferFlushed) -> list[ChatMessage]:
    """The window's messages in order, each stamped with its blob's time when it has none."""
    return [
        m if m.created_at else m.model_copy(update={"created_at": blob.created_at.isoformat()})
        for blob in flushed.blobs
        for m in blob.messages
    ]


def plan_changes(flushed: BufferFlushed, extraction: Extraction, profile: Profile) -> list[ProfileSlotChanged]:
    """Turn the extractor's answer into slot changes that are valid against ``profile``.

    An ``add`` on an existing slot becomes an ``update``, an ``update`` of a missing slot an
    ``add``; deleting a missing slot and empty contents are dropped.
    """
    changes: list[ProfileSlotChanged] = []
    current = profile
    for index, change in enumerate(extraction.changes):
        topic, sub_topic = change.topic.strip().lower(), change.sub_topic.strip().lower()
        content = change.content.strip()
        previous = current.get(slot_key(topic, sub_topic))
        exists = previous is not None
        if change.op == "delete":
            if not exists:
                continue
            op = "delete"
        elif not content:
            continue
        else:
            op = "update" if exists else "add"
        slot_change = ProfileSlotChanged(
            project_id=flushed.project_id,
            user_id=flushed.user_id,
            event_id=derived_id(flushed.flush_id, "slot", str(index)),
            profile_id=slot_id(flushed.project_id, flushed.user_id, topic, sub_topic),
            op=op,
            topic=topic,
            sub_topic=sub_topic,
            content=content,
            source_id=flushed.flush_id,
            created_at=previous.created_at if previous else None,
        )
        current = apply(current, slot_change)
        changes.append(slot_change)
    return changes


def summarize(changes: list[ProfileSlotChanged], event_id: str) -> ChatModalResponse:
    def ids(op: str) -> list[str]:
        return list(dict.fromkeys(c.profile_id for c in changes if c.op == op))

    return ChatModalResponse(
        event_id=event_id, add_profiles=ids("add"), update_profiles=ids("update"), delete_profiles=ids("delete")
    )


def register(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    extractor: Extractor,
    embedder: Embedder | None,
    directory: ProjectDirectory,
) -> None:
    profiles = app.Table("profiles", default=None, partitions=settings.topic_partitions)

    async def extract_with_retries(flushed: BufferFlushed, profile: Profile) -> Extraction:
        delay = settings.llm_backoff
        for attempt in range(1, settings.llm_max_attempts + 1):
            try:
                return await extractor.extract(chats_of(flushed), profile)
            except ExtractionFailed as exc:
                if attempt == settings.llm_max_attempts:
                    raise
                log.warning("flush %s attempt %d failed (%s); retrying in %.1fs", flushed.flush_id, attempt, exc, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable: the loop returns or raises")

    async def end_task(flushed: BufferFlushed, **outcome: object) -> None:
        await publish(
            topics.memory,
            TaskFinished(
                project_id=flushed.project_id,
                user_id=flushed.user_id,
                event_id=derived_id(flushed.flush_id, "finished"),
                flush_id=flushed.flush_id,
                blob_type=flushed.blob_type,
                task_ids=flushed.task_ids,
                blob_ids=[b.blob_id for b in flushed.blobs],
                **outcome,
            ),
        )

    async def on_flush(flushed: BufferFlushed, raw: bytes) -> None:
        profile = from_json(profiles.get(flushed.key.decode()))
        try:
            extraction = await extract_with_retries(flushed, profile)
        except ExtractionFailed as exc:
            log.error("flush %s failed for good, sent to dead letters: %s", flushed.flush_id, exc)
            await topics.dead_letter.send(key=flushed.key, value=raw, headers={"error": str(exc).encode()})
            await end_task(flushed, status="failed", error=str(exc))
            return
        changes = plan_changes(flushed, extraction, profile)
        for change in changes:
            profile = apply(profile, change)
            await publish(topics.memory, change)
        event_id = derived_id(flushed.flush_id, "event")
        event = EventRecorded(
            project_id=flushed.project_id,
            user_id=flushed.user_id,
            event_id=event_id,
            user_event_id=event_id,
            flush_id=flushed.flush_id,
            event_data=EventData(
                profile_delta=[
                    ProfileDelta(content=c.content, attributes={"topic": c.topic, "sub_topic": c.sub_topic})
                    for c in changes
                    if c.op != "delete"
                ],
                event_tip=extraction.event_tip or None,
                event_tags=extraction.event_tags or None,
            ),
        )
        await publish(topics.memory, event)
        profiles[flushed.key.decode()] = to_json(profile)
        await end_task(flushed, status="completed", results=[summarize(changes, event_id)])

    @app.agent(topics.flushes, name="extract")
    async def extract_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with dead_letter_on_error(topics, event):
                record = decode(event.value)
                if isinstance(record, BufferFlushed):
                    await on_flush(record, event.value)
                elif isinstance(record, UserDeleted):
                    profiles.pop(record.key.decode(), None)
