"""Rebuild: replaying this stack's topics into a fresh database gives the live read models, row for row."""

import uuid
from collections.abc import AsyncIterator

import pytest

from memstream.stack import Stack
from projections.replay import ReplayStats, replay
from projections.rows import COLUMNS
from projections.schema import migrate
from projections.store import DatabaseView, Store
from tests.support.history import history_settings, log_size, table_rows

pytestmark = pytest.mark.stack_settings.with_args(history_settings)


@pytest.fixture(scope="module")
async def rebuilt(history: None, stack: Stack, store: Store) -> AsyncIterator[tuple[Store, ReplayStats, list[int]]]:
    target = DatabaseView(store, f"replay_{uuid.uuid4().hex[:12]}")
    await migrate(target)
    progress: list[int] = []
    stats = await replay(stack.settings, target, progress=lambda s: progress.append(s.read), batch_size=7)
    yield target, stats, progress
    await store.command(f"DROP DATABASE IF EXISTS {target.database}")


async def test_replay_rebuilds_every_table(rebuilt: tuple[Store, ReplayStats, list[int]], store: Store) -> None:
    target = rebuilt[0]
    for table in (
        "users",
        "blobs",
        "buffer",
        "profiles",
        "profile_history",
        "events",
        "event_gists",
        "usage",
        "project_configs",
        "tasks",
        "dead_letters",
    ):
        assert await table_rows(store, table), f"the live {table} table holds nothing to compare"
    for table in COLUMNS:
        assert await table_rows(target, table) == await table_rows(store, table), f"{table} differs after replay"


async def test_replay_reads_the_whole_log_in_batches(
    rebuilt: tuple[Store, ReplayStats, list[int]], stack: Stack
) -> None:
    _, stats, progress = rebuilt
    assert (
        stats.read == await log_size(stack.settings) and stats.skipped == 0 and stats.done == stats.total >= stats.read
    )
    assert sum(stats.by_topic.values()) == stats.read and all(stats.by_topic.values())
    assert progress == [*range(7, stats.read + 1, 7), stats.read]
