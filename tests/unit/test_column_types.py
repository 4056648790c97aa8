"""Inserts hand clickhouse-connect the table's column types, asked once per table, not once per insert."""

from typing import Any

from projections.store import ColumnTypes, Row


class Describing:
    """Answers ``DESCRIBE TABLE`` with ``columns`` and counts the questions."""

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns, self.asked = columns, 0

    async def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        assert sql == "DESCRIBE TABLE db.t"
        self.asked += 1
        return [{"name": name, "type": kind} for name, kind in self.columns.items()]


async def test_types_are_asked_once_and_again_for_a_column_added_since() -> None:
    store, types = Describing({"a": "String", "b": "UInt64"}), ColumnTypes()
    assert await types.of(store, "db.t", ["b", "a"]) == ["UInt64", "String"]  # type: ignore[arg-type]
    assert await types.of(store, "db.t", ["a"]) == ["String"]  # type: ignore[arg-type]
    assert store.asked == 1
    store.columns["c"] = "Array(String)"  # a migration added a column
    assert await types.of(store, "db.t", ["a", "c"]) == ["String", "Array(String)"]  # type: ignore[arg-type]
    assert store.asked == 2
    assert await types.of(store, "db.t", ["missing"]) is None  # type: ignore[arg-type]
