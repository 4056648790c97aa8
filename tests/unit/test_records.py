"""The log's contract: each topic's union, tolerant readers, upcasting of older versions."""

import json

import pytest

from streams.records import COMMANDS, FACTS, BlobInserted, BlobType, EventDeleted, Undecodable, UserStored, encode


def test_a_record_from_a_newer_producer_with_an_extra_field_is_read() -> None:
    blob = BlobInserted(
        project_id="p",
        user_id="u",
        blob_id="b",
        task_id="t",
        blob_type=BlobType.chat,
        blob_data={"messages": []},
        created_at="2026-01-01T00:00:00Z",
    )
    newer = {**json.loads(encode(blob)), "priority": "high", "trace": {"id": 1}}
    assert COMMANDS.decode(json.dumps(newer).encode()) == blob


def test_a_v1_record_is_upcast() -> None:
    v1 = {
        "v": 1,
        "kind": "event_deleted",
        "event_id": "r1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "project_id": "p",
        "user_id": "u",
        "user_event_id": "e1",
        "gist_ids": ["g"],
    }
    record = COMMANDS.decode(json.dumps(v1).encode())
    assert isinstance(record, EventDeleted) and (record.record_id, record.event_id, record.v) == ("r1", "e1", 2)


def test_each_topic_reads_only_its_own_records() -> None:
    fact = UserStored(project_id="p", user_id="u", seq=1, data={}, created_at="2026-01-01T00:00:00Z")
    assert FACTS.decode(encode(fact)) == fact
    with pytest.raises(Undecodable, match="not a record the ingest topic carries"):
        COMMANDS.decode(encode(fact))


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"v": 99, "kind": "user_deleted"}', "schema version 99"),
        (None, "has no value"),
    ],
)
def test_undecodable_records_say_why(raw: bytes | None, why: str) -> None:
    with pytest.raises(Undecodable, match=why):
        COMMANDS.decode(raw)
