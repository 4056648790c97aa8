"""Replay's merge of partitions, the usage days, and the database view — no broker, no ClickHouse."""

from dataclasses import dataclass
from datetime import date
from typing import Any

from aiokafka import TopicPartition

from projections.replay import _Merge
from projections.store import DatabaseView
from projections.usage import fill_days

INGEST, MEMORY = "t.ingest", "t.memory"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: int


class FakeConsumer:
    """Hands out each partition's records two at a time, as a broker's fetches would."""

    def __init__(self, logs: dict[TopicPartition, list[int]]) -> None:
        self.logs = {
            tp: [Message(tp.topic, tp.partition, i, ts) for i, ts in enumerate(stamps)] for tp, stamps in logs.items()
        }
        self.positions = dict.fromkeys(logs, 0)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int) -> dict[TopicPartition, list[Message]]:
        batch = {}
        for tp in tps:
            start = self.positions[tp]
            batch[tp] = self.logs[tp][start : start + 2]
            self.positions[tp] = start + len(batch[tp])
        return {tp: messages for tp, messages in batch.items() if messages}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


async def merged(logs: dict[TopicPartition, list[int]], ends: dict[TopicPartition, int]) -> list[tuple[str, int, int]]:
    merge = _Merge(FakeConsumer(logs), ends, [INGEST, MEMORY])  # type: ignore[arg-type]
    return [(m.topic, m.partition, m.timestamp) async for m in merge]


async def test_merge_orders_by_time_across_partitions_and_keeps_each_partition_in_order() -> None:
    i0, i1, m0 = TopicPartition(INGEST, 0), TopicPartition(INGEST, 1), TopicPartition(MEMORY, 0)
    logs = {i0: [1, 5, 7, 99], i1: [8, 6], m0: [2, 3, 7, 10]}
    ends = {i0: 3, i1: 2, m0: 4}  # i0's last record came after the replay started: not replayed
    assert await merged(logs, ends) == [
        (INGEST, 0, 1),
        (MEMORY, 0, 2),
        (MEMORY, 0, 3),
        (INGEST, 0, 5),
        (INGEST, 0, 7),
        (MEMORY, 0, 7),  # a tie: the earlier topic (the cause) first
        (INGEST, 1, 8),
        (INGEST, 1, 6),  # a partition's order wins over its timestamps
        (MEMORY, 0, 10),
    ]


async def test_merge_of_nothing_ends_at_once() -> None:
    assert await merged({}, {}) == []


def test_usage_days_are_filled_with_zeros() -> None:
    tokens = [{"day": date(2025, 3, 2), "calls": 2, "input_tokens": 20, "output_tokens": 10}]
    days = fill_days(date(2025, 3, 1), date(2025, 3, 3), tokens, {date(2025, 3, 3): 4})
    assert [d["date"] for d in days] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert days[0] == {
        "date": "2025-03-01",
        "total_insert": 0,
        "total_success_insert": 0,
        "total_input_token": 0,
        "total_output_token": 0,
        "total_llm_calls": 0,
    }
    assert (days[1]["total_input_token"], days[1]["total_output_token"], days[1]["total_llm_calls"]) == (20, 10, 2)
    assert (days[2]["total_insert"], days[2]["total_success_insert"], days[2]["total_input_token"]) == (4, 4, 0)


class RecordingStore:
    database = "live"
    cluster = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.calls.append(("query", sql))
        return []

    async def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.calls.append(("command", sql))

    async def insert(self, table: str, rows: Any, columns: Any) -> None:
        self.calls.append(("insert", table))

    async def close(self) -> None:
        self.closed = True


async def test_database_view_shares_the_client_and_does_not_close_it() -> None:
    live = RecordingStore()
    view = DatabaseView(live, "rebuild")
    await view.query(f"SELECT 1 FROM {view.database}.users")
    await view.command(f"DROP TABLE {view.database}.users")
    await view.insert(f"{view.database}.users", [], [])
    await view.close()
    assert view.database == "rebuild" and live.database == "live" and not live.closed
    assert live.calls == [
        ("query", "SELECT 1 FROM rebuild.users"),
        ("command", "DROP TABLE rebuild.users"),
        ("insert", "rebuild.users"),
    ]
