"""Record → row mapping (no broker, no ClickHouse)."""

from datetime import datetime, timezone

from projections.rows import COLUMNS, Insert, Statement, ops_for
from streams.events import BlobInserted, BlobType, TaskFinished, UserDeleted, decode, encode

AT = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_records_round_trip_and_rows_are_deterministic() -> None:
    record = BlobInserted(project_id="p", user_id="u", blob_id="b", task_id="t", blob_type=BlobType.chat,
                          blob_data={"messages": []}, created_at=AT, occurred_at=AT)
    assert decode(encode(record)) == record
    ops = ops_for(record)
    assert ops == ops_for(decode(encode(record)))
    assert all(isinstance(op, Insert) and len(op.row) == len(COLUMNS[op.table]) for op in ops)
    assert {op.table for op in ops} == {"users", "blobs", "tasks"}


def test_task_finished_marks_every_task_and_blob() -> None:
    record = TaskFinished(project_id="p", user_id="u", flush_id="f", blob_type=BlobType.chat, task_ids=["t1", "t2"],
                          blob_ids=["b1"], status="failed", error="boom", occurred_at=AT)
    ops = ops_for(record)
    assert [(op.table, op.row[2], op.row[3]) for op in ops if isinstance(op, Insert)] == [
        ("tasks", "t1", "failed"), ("tasks", "t2", "failed"), ("buffer", "b1", "chat")]


def test_user_deleted_purges_every_user_table() -> None:
    ops = ops_for(UserDeleted(project_id="p", user_id="u", occurred_at=AT))
    purged = [op.sql.split("{db}.")[1].split()[0] for op in ops if isinstance(op, Statement)]
    assert purged == ["blobs", "buffer", "profiles", "profile_history", "events", "event_gists", "tasks"]
