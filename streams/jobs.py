"""The slow work the owner asks for: extracting a closed window with the LLM, and embedding an
edited event. Jobs run outside the owner's transactions, many users at once; what they return is
handed back to the owner (``streams.owner.on_job_done``), which states it as facts.

A job reads nothing but what it is given (the window, the profile at its start, the project's
config): while it runs, its user's other profile work waits in the user's queue, so the profile
it planned against is still the profile when its answer is applied.

A failed LLM or embedding call is retried with exponential backoff (``llm_max_attempts``,
``llm_backoff``); after the last attempt the job fails, with the tokens it spent.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streams.embeddings import Embedder, EmbeddingFailed
from streams.extraction import Extraction, ExtractionFailed, Extractor, Usage
from streams.gists import searchable
from streams.limits import Limits, cut
from streams.profile import Profile
from streams.project_config import ProjectConfig
from streams.records import (
    BufferFlushed,
    ChatMessage,
    EventData,
    EventEdited,
    EventRecorded,
    EventTag,
    FlushOutcome,
    ProfileDelta,
    ProfileSlotChanged,
    derived_id,
)
from streams.slot_changes import plan_changes

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ExtractFlush:
    flush: BufferFlushed
    profile: Profile

    @property
    def job_id(self) -> str:
        return self.flush.flush_id


@dataclass(frozen=True)
class EmbedEdit:
    edit: EventEdited

    @property
    def job_id(self) -> str:
        return self.edit.record_id


Job = ExtractFlush | EmbedEdit


@dataclass(frozen=True)
class Extracted:
    job_id: str
    changes: list[ProfileSlotChanged]
    event: EventRecorded
    usage: Usage


@dataclass(frozen=True)
class Embedded:
    job_id: str
    event: EventRecorded


@dataclass(frozen=True)
class JobFailed:
    job_id: str
    error: str
    usage: Usage


JobResult = Extracted | Embedded | JobFailed


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff: float  # seconds before the second attempt; doubles each time


async def retrying(policy: RetryPolicy, what: str, call: Callable[[], Awaitable[T]]) -> T:
    delay = policy.backoff
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call()
        except (ExtractionFailed, EmbeddingFailed) as exc:
            if attempt == policy.attempts:
                raise
            log.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable: the loop returns or raises")


def chats_of(flushed: BufferFlushed) -> list[ChatMessage]:
    """The window's messages in order, each stamped with its blob's time when it has none."""
    return [
        m if m.created_at else m.model_copy(update={"created_at": blob.created_at.isoformat()})
        for blob in flushed.blobs
        for m in blob.messages
    ]


def outcome_of(changes: list[ProfileSlotChanged], event_id: str) -> FlushOutcome:
    def ids(op: str) -> list[str]:
        return list(dict.fromkeys(c.profile_id for c in changes if c.op == op))

    return FlushOutcome(event_id=event_id, added=ids("add"), updated=ids("update"), deleted=ids("delete"))


def keep_tags(tags: list[EventTag], config: ProjectConfig) -> list[EventTag]:
    """The tags the project configured, each once (its first non-empty value); none without a config."""
    names = {spec.name for spec in config.event_tags}
    kept: dict[str, EventTag] = {}
    for tag in tags:
        name, value = tag.tag.strip(), tag.value.strip()
        if name in names and value and name not in kept:
            kept[name] = EventTag(tag=name, value=value)
    return list(kept.values())


def event_data(
    changes: list[ProfileSlotChanged], extraction: Extraction, config: ProjectConfig, limits: Limits
) -> EventData:
    return EventData(
        profile_delta=[
            ProfileDelta(content=c.content, attributes={"topic": c.topic, "sub_topic": c.sub_topic})
            for c in changes
            if c.op != "delete"
        ],
        event_tip=cut(extraction.event_tip, limits.event_tip_chars) or None,
        event_tags=keep_tags(extraction.event_tags, config) or None,
    )


class Jobs:
    """Runs jobs with the extractor and embedder; ``config`` gives a project's config at the job's start."""

    def __init__(
        self,
        extractor: Extractor,
        embedder: Embedder | None,
        config: Callable[[str], Awaitable[ProjectConfig]],
        policy: RetryPolicy,
        limits: Limits,
    ) -> None:
        self._extractor, self._embedder, self._config = extractor, embedder, config
        self._policy, self._limits = policy, limits

    async def run(self, job: Job) -> JobResult:
        if isinstance(job, ExtractFlush):
            return await self._extract(job)
        return await self._embed(job)

    async def _searchable(
        self, cause: EventEdited | BufferFlushed, event_id: str, data: EventData, id_base: str, **fields: object
    ) -> EventRecorded:
        embedding, gists = await retrying(
            self._policy, f"embedding event {event_id}", lambda: searchable(data, id_base, self._embedder, self._limits)
        )
        return EventRecorded(
            project_id=cause.project_id,
            user_id=cause.user_id,
            record_id=derived_id(id_base, "event"),
            seq=0,
            event_id=event_id,
            event_data=data,
            embedding=embedding,
            gists=gists,
            **fields,
        )

    async def _extract(self, job: ExtractFlush) -> Extracted | JobFailed:
        flushed = job.flush
        config = await self._config(flushed.project_id)
        chats = chats_of(flushed)
        spent = Usage()

        async def extract_once() -> Extraction:
            nonlocal spent
            try:
                extraction = await self._extractor.extract(chats, job.profile, config)
            except ExtractionFailed as exc:
                spent += exc.usage
                raise
            spent += extraction.usage
            return extraction

        event_id = derived_id(flushed.flush_id, "event")
        try:
            extraction = await retrying(self._policy, f"flush {flushed.flush_id}", extract_once)
            changes = plan_changes(flushed, extraction, job.profile, config, self._limits)
            data = event_data(changes, extraction, config, self._limits)
            event = await self._searchable(flushed, event_id, data, event_id, flush_id=flushed.flush_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the flush's tasks must end, visibly
            error = str(exc) if isinstance(exc, (ExtractionFailed, EmbeddingFailed)) else f"{type(exc).__name__}: {exc}"
            log.error("flush %s failed for good: %s", flushed.flush_id, error)
            return JobFailed(job.job_id, error, spent)
        return Extracted(job.job_id, changes, event, spent)

    async def _embed(self, job: EmbedEdit) -> Embedded | JobFailed:
        edit = job.edit
        try:
            event = await self._searchable(
                edit,
                edit.event_id,
                edit.event_data,
                edit.record_id,
                flush_id=edit.record_id,
                retired_gist_ids=edit.gist_ids,
                created_at=edit.created_at,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the edit is parked with its reason
            return JobFailed(job.job_id, str(exc), Usage())
        return Embedded(job.job_id, event)
