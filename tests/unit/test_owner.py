"""The owner's decisions, without a broker: windows, the per-user queue, deletes, refusals."""

from datetime import UTC, datetime, timedelta

from streams.extraction import Usage
from streams.jobs import Embedded, EmbedEdit, Extracted, ExtractFlush, JobFailed
from streams.limits import Limits
from streams.owner import Owner, Step, UserMemory
from streams.records import (
    BlobDeleted,
    BlobInserted,
    BlobStored,
    BlobType,
    BufferClosed,
    BufferFlushed,
    EditApplied,
    EventData,
    EventEdited,
    EventRecorded,
    FlushReplayed,
    FlushRequested,
    ProfileEdited,
    ProfileSlotChanged,
    TaskFinished,
    UserDeleted,
    UserForgotten,
    UserStored,
    derived_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = Limits(buffer_tokens=40, buffer_bytes=4096, buffer_messages=6, blob_bytes=4096, blob_messages=6)
OWNER = Owner(LIMITS, max_queued=3)


def blob(n: int, *lines: str, at: datetime = T0) -> BlobInserted:
    return BlobInserted(
        project_id="p",
        user_id="u",
        blob_id=f"b{n}",
        task_id=f"t{n}",
        blob_type=BlobType.chat,
        blob_data={"messages": [{"role": "user", "content": x} for x in lines]},
        created_at=at,
        occurred_at=at,
    )


def run(memory: UserMemory, *commands: object, now: datetime = T0) -> tuple[UserMemory, list[Step]]:
    steps = []
    for command in commands:
        step = OWNER.on_command(memory, command, now)  # type: ignore[arg-type]
        steps.append(step)
        memory = step.memory
    return memory, steps


def facts(steps: list[Step]) -> list[object]:
    return [fact for step in steps for fact in step.facts]


def extracted(flush: BufferFlushed, content: str) -> Extracted:
    change = ProfileSlotChanged(
        project_id="p",
        user_id="u",
        seq=0,
        profile_id="s1",
        op="add",
        topic="work",
        sub_topic="title",
        content=content,
        source_id=flush.flush_id,
    )
    event = EventRecorded(
        project_id="p",
        user_id="u",
        seq=0,
        event_id=derived_id(flush.flush_id, "event"),
        flush_id=flush.flush_id,
        event_data=EventData(event_tip=content),
    )
    return Extracted(flush.flush_id, [change], event, Usage(model="m", calls=1, input_tokens=3, output_tokens=2))


def test_a_blob_registers_its_user_and_waits_in_the_window() -> None:
    memory, steps = run(UserMemory("p", "u"), blob(1, "hello"))
    kinds = [type(f) for f in facts(steps)]
    assert kinds == [UserStored, BlobStored]
    assert [f.seq for f in facts(steps)] == [1, 2]
    assert memory.window is not None and [b.blob_id for b in memory.window.blobs] == ["b1"]
    assert steps[0].start is None and not memory.queue


def test_a_window_closes_on_tokens_bytes_or_messages_and_its_extraction_starts() -> None:
    long = "word " * 50  # over 40 tokens
    memory, steps = run(UserMemory("p", "u"), blob(1, long))
    stored = [f for f in facts(steps) if isinstance(f, BlobStored)][0]
    closed = [f for f in facts(steps) if isinstance(f, BufferClosed)]
    assert stored.flush_id == closed[0].flush_id and closed[0].reason == "size"
    assert isinstance(steps[0].start, ExtractFlush) and memory.running and memory.window is None

    # six empty messages: no tokens at all, yet the window closes at the message bound
    memory, steps = run(UserMemory("p", "v"), blob(2, *[""] * 6))
    assert memory.window is None and len(memory.queue) == 1

    # a blob that would take the window past its messages closes the window first
    memory, steps = run(UserMemory("p", "w"), blob(3, "a", "b"), blob(4, "c", "d", "e", "f", "g"))
    closed = [f for f in facts(steps) if isinstance(f, BufferClosed)]
    assert [c.blob_ids for c in closed] == [["b3"]] and [b.blob_id for b in memory.window.blobs] == ["b4"]


def test_a_users_second_flush_waits_for_the_first_and_sees_its_profile() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    memory, [first] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"))
    memory, (_, second) = run(
        memory, blob(2, "two"), FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f2")
    )
    assert isinstance(first.start, ExtractFlush) and second.start is None  # queued behind the first
    assert [getattr(q, "flush_id", None) for q in memory.queue] == ["f1", "f2"]
    done = OWNER.on_job_done(memory, extracted(first.start.flush, "pilot"), T0)
    assert isinstance(done.start, ExtractFlush) and done.start.flush.flush_id == "f2"
    assert done.start.profile["work::title"].content == "pilot"  # the second sees the first's profile
    finished = [f for f in done.facts if isinstance(f, TaskFinished)][0]
    assert (finished.status, finished.task_ids) == ("completed", ["t1", "f1"])
    assert finished.outcomes[0].added == ["s1"]


def test_an_edit_waits_for_the_running_extraction_then_applies_in_order() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    memory, [step] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"))
    edit = ProfileEdited(project_id="p", user_id="u", op="add", topic="food", sub_topic="fruit", content="figs")
    memory, [queued] = run(memory, edit)
    assert not queued.facts and len(memory.queue) == 2
    done = OWNER.on_job_done(memory, extracted(step.start.flush, "pilot"), T0)
    slots = [f for f in done.facts if isinstance(f, ProfileSlotChanged)]
    assert [(s.topic, s.content) for s in slots] == [("work", "pilot"), ("food", "figs")]
    assert not done.memory.queue and not done.memory.running


def test_a_flush_request_behind_running_work_ends_after_it() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    memory, [step] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"))
    memory, [later] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f2"))
    assert not later.facts  # the buffer is empty, but work before it is under way
    done = OWNER.on_job_done(memory, extracted(step.start.flush, "x"), T0)
    ends = [f.task_ids for f in done.facts if isinstance(f, TaskFinished)]
    assert ends == [["t1", "f1"], ["f2"]]


def test_delete_forgets_at_once_and_voids_the_job_under_way() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    memory, [step] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"))
    memory, [deleted] = run(memory, UserDeleted(project_id="p", user_id="u"))
    assert [type(f) for f in deleted.facts] == [UserForgotten] and deleted.void_job
    assert memory.created_at is None and not memory.queue and memory.seq == deleted.facts[0].seq
    late = OWNER.on_job_done(memory, extracted(step.start.flush, "pilot"), T0)
    assert not late.facts and late.memory is memory  # nothing of the deleted user comes back
    replay = FlushReplayed(project_id="p", user_id="u", flush=step.start.flush)
    refused = OWNER.on_command(memory, replay, T0)
    assert refused.parked and "no longer exists" in refused.parked[0].reason


def test_a_failed_job_parks_the_flush_and_fails_its_tasks() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    memory, [step] = run(memory, FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"))
    failed = OWNER.on_job_done(memory, JobFailed("f1", "LLM call failed: 500", Usage(model="m", calls=3)), T0)
    [finished] = [f for f in failed.facts if isinstance(f, TaskFinished)]
    assert (finished.status, finished.error) == ("failed", "LLM call failed: 500")
    assert [p.record.flush_id for p in failed.parked] == ["f1"]  # type: ignore[attr-defined]
    assert any(f.kind == "usage_recorded" for f in failed.facts)  # the failed attempts are billed


def test_blob_delete_takes_it_out_of_the_window_or_a_waiting_flush() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"), blob(2, "two"))
    memory, [step] = run(memory, BlobDeleted(project_id="p", user_id="u", blob_id="b1"))
    assert [b.blob_id for b in memory.window.blobs] == ["b2"]
    ends = [f for f in step.facts if isinstance(f, TaskFinished)]
    assert ends[0].task_ids == ["t1"] and ends[0].blob_ids == []
    memory, _ = run(
        memory,
        FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f1"),
        blob(3, "three"),
        FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id="f2"),
    )
    memory, _ = run(memory, BlobDeleted(project_id="p", user_id="u", blob_id="b3"))
    assert [q.flush_id for q in memory.queue] == ["f1"]  # the waiting flush held only b3; its request ended


def test_refusals_end_the_task_and_park_the_command() -> None:
    memory = UserMemory("p", "u")
    too_many = blob(1, *["x"] * 7)  # 7 messages, at most 6
    step = OWNER.on_command(memory, too_many, T0)
    [finished] = step.facts
    assert isinstance(finished, TaskFinished) and finished.status == "failed" and "at most 6" in (finished.error or "")
    assert step.parked[0].record is too_many
    huge = ProfileEdited(project_id="p", user_id="u", op="add", topic="a", sub_topic="b", content="x" * 2001)
    refused = OWNER.on_command(memory, huge, T0)
    assert "at most 2000" in refused.parked[0].reason
    [applied] = refused.facts  # whoever waits for the edit hears that it failed
    assert isinstance(applied, EditApplied) and applied.outcome == "failed" and applied.edit_id == huge.record_id


def test_the_queue_is_bounded() -> None:
    memory = UserMemory("p", "u")
    for n in range(1, 5):
        memory, _ = run(
            memory, blob(n, "x"), FlushRequested(project_id="p", user_id="u", blob_type=BlobType.chat, task_id=f"f{n}")
        )
    assert len(memory.queue) == 3  # the fourth window could not be queued
    assert memory.window is not None and memory.window.blobs[0].blob_id == "b4"


def test_an_idle_window_closes_after_the_interval() -> None:
    memory, _ = run(UserMemory("p", "u"), blob(1, "one"))
    assert OWNER.on_idle(memory, T0 + timedelta(seconds=5), idle_after=10).memory is memory
    step = OWNER.on_idle(memory, T0 + timedelta(seconds=11), idle_after=10)
    assert [f.reason for f in step.facts if isinstance(f, BufferClosed)] == ["idle"]
    assert isinstance(step.start, ExtractFlush)


def test_an_event_edit_is_embedded_in_the_users_turn() -> None:
    edit = EventEdited(project_id="p", user_id="u", event_id="e1", event_data=EventData(event_tip="new"), created_at=T0)
    memory, [step] = run(UserMemory("p", "u", created_at=T0), edit)
    assert isinstance(step.start, EmbedEdit)
    event = EventRecorded(
        project_id="p", user_id="u", seq=0, event_id="e1", flush_id=edit.record_id, event_data=edit.event_data
    )
    done = OWNER.on_job_done(memory, Embedded(edit.record_id, event), T0)
    assert [f.kind for f in done.facts] == ["event_recorded", "edit_applied"] and not done.memory.queue
