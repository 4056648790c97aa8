"""The owner of each user's memory: the one place that decides what happens to a user, and the
only writer of the facts the read models are built from.

    command ─▶ on_command ─┐                         ┌─▶ facts (memory topic, seq 1, 2, 3 …)
    job answer ─▶ on_job_done ─┼─▶ UserMemory ─▶ Step ┼─▶ parked records (dead letters)
    timer ─▶ on_idle ───────┘                         └─▶ a job to start (the queue's head)

A user's memory holds the open chat window, the profile slots, and a queue of the work that
reads or changes the profile: closed windows (extracted by the LLM), manual profile and event
edits, event deletes, and flush requests that wait for the work before them. Only the queue's
head runs; the rest waits for its turn, so a user's second flush is extracted after, and
against the profile of, the first, and an edit is applied in the order it was sent. Commands that
do not touch the profile (blobs, users) are applied at once, even while the head's job runs for
seconds, so what a client wrote is stated at once.

A user delete is applied at once too: it states ``UserForgotten`` after everything stated before
it, and drops the queue; the answer of the job in flight then matches nothing and is void. Since
one owner states every fact of a user, in order, nothing extracted before or during the delete
can be stated after it — in ClickHouse, or in a rebuild from the log.

Everything here is pure: no clock (``now`` is given), no I/O. ``streams.runtime`` runs it over
Kafka, with each step's facts, state and input position committed in one transaction.
"""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from streams.buffer import Window, add, chat_blob, close, flush_id_for, without
from streams.jobs import Embedded, EmbedEdit, Extracted, ExtractFlush, Job, JobFailed, JobResult, outcome_of
from streams.limits import Limits
from streams.profile import Profile, apply
from streams.records import (
    BUFFERED_BLOB_TYPES,
    BlobDeleted,
    BlobDropped,
    BlobInserted,
    BlobStored,
    BufferClosed,
    BufferFlushed,
    Command,
    EditApplied,
    EventDeleted,
    EventDropped,
    EventEdited,
    Fact,
    FlushReplayed,
    FlushRequested,
    ProfileEdited,
    ProfileSlotChanged,
    Record,
    TaskFinished,
    UsageRecorded,
    UserCreated,
    UserDeleted,
    UserForgotten,
    UserStored,
    UserUpdated,
    derived_id,
)
from streams.slot_changes import plan_edit

log = logging.getLogger(__name__)

Queued = BufferFlushed | ProfileEdited | EventEdited | EventDeleted | FlushRequested
FactT = TypeVar("FactT", bound=Fact)
MAX_DATA_BYTES = 65_536  # a user's data, an edited event's data


def queued_id(item: Queued) -> str:
    """The id a queued item is known by (its job's id when it has one)."""
    return item.flush_id if isinstance(item, BufferFlushed) else item.record_id


@dataclass(frozen=True)
class UserMemory:
    project_id: str
    user_id: str
    seq: int = 0  # of the last fact stated
    created_at: datetime | None = None  # None: the user does not exist (never seen, or forgotten)
    window: Window | None = None
    slots: Profile = field(default_factory=dict)
    queue: tuple[Queued, ...] = ()
    running: bool = False  # the head of the queue has a job under way

    @property
    def key(self) -> str:
        return f"{self.project_id}:{self.user_id}"


@dataclass(frozen=True)
class Parked:
    """A record that cannot be processed (or whose job failed for good), and why."""

    record: Record
    reason: str


@dataclass
class Step:
    memory: UserMemory
    facts: list[Fact] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)
    start: Job | None = None
    void_job: bool = False  # the job under way is no longer wanted (its user was forgotten)


class _Stating:
    """A step being built: facts are stamped with the user's next ``seq`` and the step's time."""

    def __init__(self, memory: UserMemory, now: datetime) -> None:
        self.step = Step(memory)
        self.now = now

    @property
    def memory(self) -> UserMemory:
        return self.step.memory

    def update(self, **changes: Any) -> None:
        self.step.memory = replace(self.step.memory, **changes)

    def state(self, fact: FactT) -> FactT:
        seq = self.memory.seq + 1
        stamped = fact.model_copy(update={"seq": seq, "occurred_at": self.now})
        self.update(seq=seq)
        self.step.facts.append(stamped)
        return stamped

    def stated(self, kind: type[FactT], cause: Record, record_id: str, **fields: Any) -> FactT:
        """State a ``kind`` fact of ``cause``'s user, with the id ``record_id`` (derived from the cause)."""
        return self.state(
            kind(project_id=cause.project_id, user_id=cause.user_id, record_id=record_id, seq=0, **fields)
        )

    def change_slots(self, changes: Iterable[ProfileSlotChanged]) -> None:
        slots = self.memory.slots
        for change in changes:
            slots = apply(slots, self.state(change))
        self.update(slots=slots)

    def applied(self, edit: Record, outcome: str, reason: str = "", profile_ids: list[str] | None = None) -> None:
        self.stated(
            EditApplied,
            edit,
            derived_id(edit.record_id, "applied"),
            edit_id=edit.record_id,
            outcome=outcome,
            reason=reason,
            profile_ids=profile_ids or [],
        )

    def finish(self, cause: Record, flush_id: str, task_ids: list[str], blob_ids: list[str], **outcome: object) -> None:
        self.stated(
            TaskFinished,
            cause,
            derived_id(flush_id, "finished"),
            flush_id=flush_id,
            blob_type=getattr(cause, "blob_type", "chat"),
            task_ids=task_ids,
            blob_ids=blob_ids,
            status=outcome.pop("status", "completed"),
            **outcome,
        )


def _data_problem(data: object, what: str) -> str | None:
    size = len(json.dumps(data, ensure_ascii=False, default=str).encode())
    return f"{what}: {size} bytes, at most {MAX_DATA_BYTES}" if size > MAX_DATA_BYTES else None


def problem_of(command: Command, limits: Limits) -> str | None:
    """What makes ``command`` impossible to apply within ``limits``, or None. The API asks the same
    question before it sends a command, so a client hears it as a 413 rather than a failed task."""
    match command:
        case UserCreated() | UserUpdated():
            return _data_problem(command.data, "data")
        case BlobInserted() if command.blob_type in BUFFERED_BLOB_TYPES:
            try:
                chat_blob(command, limits)
            except ValueError as exc:
                return str(exc)
            return _data_problem(command.fields, "fields")
        case BlobInserted():
            size = len(json.dumps(command.blob_data, ensure_ascii=False).encode())
            if size > limits.blob_bytes:
                return f"blob_data: {size} bytes, at most {limits.blob_bytes} per blob (MEMSTREAM_MAX_BLOB_BYTES)"
            return _data_problem(command.fields, "fields")
        case ProfileEdited() if len(command.content) > limits.slot_chars:
            return f"content: {len(command.content)} characters, at most {limits.slot_chars}"
        case EventEdited():
            return _data_problem(command.event_data.model_dump(), "event_data")
    return None


class Owner:
    def __init__(self, limits: Limits, max_queued: int) -> None:
        self.limits, self.max_queued = limits, max_queued

    # --- entry points ---------------------------------------------------------------------------

    def on_command(self, memory: UserMemory, command: Command, now: datetime) -> Step:
        problem = problem_of(command, self.limits)
        if problem:
            return self.refuse(memory, command, problem, now)
        s = _Stating(memory, now)
        match command:
            case UserCreated() | UserUpdated():
                self._store_user(s, command, command.data or {})
            case UserDeleted():
                void = bool(memory.queue) and memory.running
                s.step.memory = UserMemory(memory.project_id, memory.user_id, seq=memory.seq)
                s.stated(UserForgotten, command, derived_id(command.record_id, "forgotten"))
                s.step.void_job = void
                return s.step
            case BlobInserted():
                try:
                    self._blob(s, command)
                except ValueError as exc:
                    return self.refuse(memory, command, str(exc), now)
            case BlobDeleted():
                self._drop_blob(s, command)
            case FlushRequested():
                if len(memory.queue) >= self.max_queued:
                    return self.refuse(memory, command, self._queue_full(memory), now)
                self._request_flush(s, command)
            case ProfileEdited() | EventEdited() | EventDeleted():
                if len(memory.queue) >= self.max_queued:
                    return self.refuse(memory, command, self._queue_full(memory), now)
                s.update(queue=(*memory.queue, command))
            case FlushReplayed():
                if memory.created_at is None:  # forgotten since: extracting it would bring them back
                    return self.refuse(memory, command, f"user {memory.user_id} no longer exists", now)
                if len(memory.queue) >= self.max_queued:
                    return self.refuse(memory, command, self._queue_full(memory), now)
                self._closed(s, command.flush)
        return self._advance(s)

    def on_job_done(self, memory: UserMemory, result: JobResult, now: datetime) -> Step:
        """State what the head's job found; an answer for anything else (a forgotten user's job,
        a job started again after a restart whose first run answered) changes nothing."""
        if not (memory.queue and memory.running and queued_id(memory.queue[0]) == result.job_id):
            return Step(memory)
        s = _Stating(memory, now)
        head = memory.queue[0]
        s.update(queue=memory.queue[1:], running=False)
        if isinstance(head, BufferFlushed):
            self._flush_done(s, head, result)
        elif isinstance(result, Embedded):
            s.state(result.event)
            s.applied(head, "applied")
        elif isinstance(result, JobFailed):
            s.step.parked.append(Parked(head, result.error))
            s.applied(head, "failed", result.error)
        return self._advance(s)

    def on_idle(self, memory: UserMemory, now: datetime, idle_after: float) -> Step:
        """Close the open window if nothing joined it for ``idle_after`` seconds."""
        window = memory.window
        if (
            window is None
            or (now - window.last_at).total_seconds() < idle_after
            or len(memory.queue) >= self.max_queued
        ):
            return Step(memory)
        s = _Stating(memory, now)
        s.update(window=None)
        self._closed(s, close(window, memory.project_id, memory.user_id, flush_id_for(window, "idle"), "idle"))
        return self._advance(s)

    def refuse(self, memory: UserMemory, command: Command, reason: str, now: datetime) -> Step:
        """Park ``command`` with ``reason``; the task it started, if any, ends ``failed``."""
        log.warning("refused %s %s of user %s: %s", command.kind, command.record_id, command.user_id, reason)
        s = _Stating(memory, now)
        s.step.parked.append(Parked(command, reason))
        if isinstance(command, (BlobInserted, FlushRequested)):
            s.finish(command, command.task_id, [command.task_id], [], status="failed", error=reason)
        elif isinstance(command, FlushReplayed):
            flush = command.flush
            s.finish(
                flush, flush.flush_id, flush.task_ids, [b.blob_id for b in flush.blobs], status="failed", error=reason
            )
        elif isinstance(command, (ProfileEdited, EventEdited, EventDeleted)):
            s.applied(command, "failed", reason)
        return s.step

    # --- commands ---------------------------------------------------------------------------------

    def _store_user(self, s: _Stating, cause: Record, data: dict[str, object]) -> None:
        created = s.memory.created_at or cause.occurred_at
        s.stated(UserStored, cause, derived_id(cause.record_id, "user"), data=data, created_at=created)
        s.update(created_at=created)

    def _store_user_if_new(self, s: _Stating, cause: Record) -> None:
        """A user first seen through a blob exists from then on, with no data."""
        if s.memory.created_at is None:
            self._store_user(s, cause, {})

    def _blob(self, s: _Stating, blob: BlobInserted) -> None:
        stored = {k: getattr(blob, k) for k in ("blob_id", "task_id", "blob_type", "blob_data", "fields", "created_at")}
        fact = BlobStored(
            project_id=blob.project_id,
            user_id=blob.user_id,
            record_id=derived_id(blob.record_id, "stored"),
            seq=0,
            **stored,
        )
        if blob.blob_type not in BUFFERED_BLOB_TYPES:  # stored only: its task is done once it is
            self._store_user_if_new(s, blob)
            s.state(fact)
            s.finish(blob, blob.task_id, [blob.task_id], [blob.blob_id])
            return
        window, closed = add(s.memory.window, chat_blob(blob, self.limits), blob.occurred_at, self.limits)
        if len(s.memory.queue) + len(closed) > self.max_queued:
            raise ValueError(self._queue_full(s.memory))
        self._store_user_if_new(s, blob)
        own = next((w for w in closed if w.blobs[-1].blob_id == blob.blob_id), None)
        s.state(fact.model_copy(update={"flush_id": flush_id_for(own, "size") if own else None}))
        s.update(window=window)
        for full in closed:
            self._closed(s, close(full, blob.project_id, blob.user_id, flush_id_for(full, "size"), "size"))

    def _drop_blob(self, s: _Stating, command: BlobDeleted) -> None:
        s.stated(BlobDropped, command, derived_id(command.record_id, "dropped"), blob_id=command.blob_id)
        memory = s.memory
        window = memory.window
        if window is not None and (gone := next((b for b in window.blobs if b.blob_id == command.blob_id), None)):
            s.update(window=without(window, command.blob_id))
            s.finish(command, derived_id(gone.task_id, "dropped"), [gone.task_id], [])
            return
        kept: list[Queued] = []
        for index, item in enumerate(memory.queue):
            running = index == 0 and memory.running
            blobs = item.blobs if isinstance(item, BufferFlushed) else []
            if running or not any(b.blob_id == command.blob_id for b in blobs):
                kept.append(item)
                continue
            assert isinstance(item, BufferFlushed)
            gone = next(b for b in blobs if b.blob_id == command.blob_id)
            left = [b for b in blobs if b.blob_id != command.blob_id]
            s.finish(command, derived_id(gone.task_id, "dropped"), [gone.task_id], [])
            if left:
                kept.append(
                    item.model_copy(update={"blobs": left, "task_ids": [t for t in item.task_ids if t != gone.task_id]})
                )
            else:
                others = [t for t in item.task_ids if t != gone.task_id]
                if others:
                    s.finish(item, item.flush_id, others, [])
        s.update(queue=tuple(kept))

    def _request_flush(self, s: _Stating, request: FlushRequested) -> None:
        window = s.memory.window
        if window is not None:
            s.update(window=None)
            flushed = close(window, request.project_id, request.user_id, request.task_id, "request", (request.task_id,))
            self._closed(s, flushed)
        elif s.memory.queue:
            s.update(queue=(*s.memory.queue, request))  # ends once the work before it has
        else:
            s.finish(request, request.task_id, [request.task_id], [])

    def _closed(self, s: _Stating, flushed: BufferFlushed) -> None:
        s.stated(
            BufferClosed,
            flushed,
            derived_id(flushed.flush_id, "closed", str(s.memory.seq)),
            flush_id=flushed.flush_id,
            blob_type=flushed.blob_type,
            reason=flushed.reason,
            blob_ids=[b.blob_id for b in flushed.blobs],
            task_ids=flushed.task_ids,
        )
        s.update(queue=(*s.memory.queue, flushed))

    # --- the queue ---------------------------------------------------------------------------------

    def _advance(self, s: _Stating) -> Step:
        """Apply the queue's instant items up to the first that needs a job, and start that job."""
        while s.memory.queue and not s.memory.running:
            head = s.memory.queue[0]
            if isinstance(head, BufferFlushed):
                s.update(running=True)
                s.step.start = ExtractFlush(head, s.memory.slots)
                break
            if isinstance(head, EventEdited):
                s.update(running=True)
                s.step.start = EmbedEdit(head)
                break
            s.update(queue=s.memory.queue[1:])
            if isinstance(head, ProfileEdited):
                changes = plan_edit(head, s.memory.slots)
                s.change_slots(changes)
                live = list(dict.fromkeys(c.profile_id for c in changes if c.op != "delete"))
                if changes:
                    s.applied(head, "applied", profile_ids=live)
                else:
                    s.applied(
                        head,
                        "ignored",
                        f"no slot {head.profile_id} to {head.op}" if head.profile_id else "nothing to write",
                    )
            elif isinstance(head, EventDeleted):
                s.stated(
                    EventDropped,
                    head,
                    derived_id(head.record_id, "dropped"),
                    event_id=head.event_id,
                    gist_ids=head.gist_ids,
                )
                s.applied(head, "applied")
            else:
                s.finish(head, head.task_id, [head.task_id], [])
        return s.step

    def _flush_done(self, s: _Stating, flushed: BufferFlushed, result: JobResult) -> None:
        spent = result.usage if isinstance(result, (Extracted, JobFailed)) else None
        if spent is not None and spent.calls:
            s.stated(
                UsageRecorded,
                flushed,
                derived_id(flushed.flush_id, "usage", str(s.memory.seq)),
                source_id=flushed.flush_id,
                **spent.model_dump(),
            )
        blob_ids = [b.blob_id for b in flushed.blobs]
        if isinstance(result, Extracted):
            s.change_slots(result.changes)
            s.state(result.event)
            s.finish(
                flushed,
                flushed.flush_id,
                flushed.task_ids,
                blob_ids,
                outcomes=[outcome_of(result.changes, result.event.event_id)],
            )
        else:
            error = result.error if isinstance(result, JobFailed) else "the job answered for another kind of work"
            s.finish(flushed, flushed.flush_id, flushed.task_ids, blob_ids, status="failed", error=error)
            s.step.parked.append(Parked(flushed, error))

    def _queue_full(self, memory: UserMemory) -> str:
        return (
            f"user {memory.user_id} has {len(memory.queue)} flushes and edits waiting for extraction "
            f"(at most {self.max_queued}, MEMSTREAM_MAX_QUEUED); send more once they are done"
        )
