"""Fact → row mapping (no broker, no ClickHouse)."""

from datetime import UTC, datetime

from projections.rows import COLUMNS, USER_TABLES, Insert, Statement, ops_for
from streams.records import FACTS, BlobStored, BlobType, BufferClosed, TaskFinished, UserForgotten, encode

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_facts_round_trip_and_rows_are_deterministic_with_the_seq_as_version() -> None:
    fact = BlobStored(
        project_id="p",
        user_id="u",
        seq=7,
        blob_id="b",
        task_id="t",
        blob_type=BlobType.chat,
        blob_data={"messages": []},
        created_at=AT,
        occurred_at=AT,
    )
    assert FACTS.decode(encode(fact)) == fact
    ops = ops_for(fact)
    assert ops == ops_for(FACTS.decode(encode(fact)))
    assert all(isinstance(op, Insert) and len(op.row) == len(COLUMNS[op.table]) for op in ops)
    assert [op.table for op in ops] == ["blobs", "tasks", "buffer"]
    assert {op.row[COLUMNS[op.table].index("version")] for op in ops} == {7}


def test_a_closed_window_marks_blobs_processing_and_tasks_running() -> None:
    fact = BufferClosed(
        project_id="p",
        user_id="u",
        seq=3,
        flush_id="f",
        blob_type=BlobType.chat,
        reason="request",
        blob_ids=["b1"],
        task_ids=["t1", "f"],
        occurred_at=AT,
    )
    assert [(op.table, op.row[2], op.row[3]) for op in ops_for(fact)] == [
        ("buffer", "b1", "chat"),
        ("tasks", "t1", "running"),
        ("tasks", "f", "running"),
    ]
    buffer = next(op for op in ops_for(fact) if op.table == "buffer")
    assert buffer.row[COLUMNS["buffer"].index("flush_id")] == "f"  # what the flush read, for a slot's history


def test_task_finished_marks_every_task_and_blob() -> None:
    record = TaskFinished(
        project_id="p",
        user_id="u",
        seq=4,
        flush_id="f",
        blob_type=BlobType.chat,
        task_ids=["t1", "t2"],
        blob_ids=["b1"],
        status="failed",
        error="boom",
        occurred_at=AT,
    )
    ops = ops_for(record)
    assert [(op.table, op.row[2], op.row[3]) for op in ops if isinstance(op, Insert)] == [
        ("tasks", "t1", "failed"),
        ("tasks", "t2", "failed"),
        ("buffer", "b1", "chat"),
    ]


def test_a_forgotten_user_is_erased_from_every_user_table_then_marked_deleted() -> None:
    ops = ops_for(UserForgotten(project_id="p", user_id="u", seq=9, occurred_at=AT))
    purged = [op.table for op in ops if isinstance(op, Statement)]
    assert purged == list(USER_TABLES)
    assert isinstance(ops[-1], Insert) and ops[-1].table == "users" and ops[-1].row[-2:] == (9, 1)
