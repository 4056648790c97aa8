"""The producers' contract stays true: ``docs/schema/`` is what ``memstream schema`` writes from the code."""

from pathlib import Path

from memstream.schema import SCHEMA_DIR, schema_files

COMMITTED = Path(__file__).resolve().parents[2] / SCHEMA_DIR


def test_the_committed_schema_is_the_code() -> None:
    expected = schema_files()
    committed = {path.name: path.read_text() for path in COMMITTED.glob("*.json")}
    assert committed == expected, (
        f"{SCHEMA_DIR}/ differs from the ingest records in streams/records.py: run `memstream schema` "
        "and commit the result (a change to a producer-facing record changes the published contract)"
    )
