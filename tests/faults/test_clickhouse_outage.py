"""Fault drill: ClickHouse (the chDB HTTP front, through ``ServerStore``) stops in the middle of a
load of inserts and starts again.

    load ─▶ api ─▶ broker ─▶ owner ─▶ projection writer ─▶ front ■ stopped (SIGTERM) ······ started again
            inserts: still 200 (they only need the broker)     writer: retries, commits nothing
            reads: HTTP 503, errno 503                          then catches up (measured)
            healthcheck: 503 naming the writer                  healthcheck: 200 again

Afterwards the blobs table holds every acknowledged blob once, with FINAL and without, and every
task that started has ended.
"""

import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition

from memstream.settings import Settings
from tests.faults.support import (
    Drill,
    InsertLoad,
    LogCount,
    blob_copies_in_log,
    blob_counts,
    drill_stack,
    open_tasks,
    polled,
    report,
    scaled,
    stored_blob_ids,
    task_statuses,
)
from tests.support.client import eventually
from tests.support.records import group_offsets

USERS = int(scaled(4, 12))
MIN_OUTAGE = scaled(2.0, 20.0)  # seconds the front stays down at least (and until the conditions below are seen)


@pytest.fixture(scope="module")
async def drill(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Drill]:
    async with drill_stack(tmp_path_factory.mktemp("clickhouse-outage")) as drill:
        yield drill


async def committed_offsets(settings: Settings) -> dict[TopicPartition, int | None]:
    """The projection writer's committed offsets on the topics it reads."""
    return await group_offsets(settings, settings.projection_group, settings.topic_memory, settings.topic_projects)


async def test_inserts_go_on_reads_answer_503_and_projections_catch_up(drill: Drill) -> None:
    writer = drill.stack.writer
    assert writer is not None
    load = InsertLoad(drill.api, users=USERS, per_user=int(scaled(200, 5000))).start()
    with LogCount("projections.writer", "ClickHouse unavailable") as write_failures:
        try:
            await eventually(
                polled(lambda: len(load.acked()) >= 3 * USERS), what="inserts acknowledged before the outage"
            )
            known = load.acked()[0]

            async def readable() -> bool:
                return known.blob_id in await stored_blob_ids(drill.store, [known.user])

            await eventually(readable, what="a blob projected before the outage")
            await drill.stop_front()
            down_at = time.monotonic()

            # Reads need ClickHouse: a 503 envelope, at once.
            status, body = await drill.api.call("GET", f"/blobs/{known.user}/{known.blob_id}")
            assert (status, body["errno"], body["data"]) == (503, 503, None), body
            status, body = await drill.api.call("GET", f"/users/profile/{known.user}")
            assert (status, body["errno"]) == (503, 503), body

            # The writer notices, and from then on neither counts nor commits anything; health says so.
            await eventually(polled(lambda: write_failures.count), what="the projection writer failing to write")

            async def unhealthy() -> str | None:
                status, body = await drill.api.call("GET", "/healthcheck")
                return body["errmsg"] if status == 503 else None

            reason = await eventually(unhealthy, what="the healthcheck reporting the writer")
            assert reason.startswith("the projection writer cannot write ClickHouse"), reason
            paused_written, paused_offsets = writer.records_written, await committed_offsets(drill.settings)
            paused_at = time.monotonic()

            def inserts_went_on() -> bool:
                users_acked = {a.user for a in load.acked(after=paused_at)}
                return users_acked == set(load.user_ids) and time.monotonic() - down_at >= MIN_OUTAGE

            await eventually(
                polled(inserts_went_on),
                timeout=MIN_OUTAGE + 30,
                what="every user's inserts acknowledged during the outage",
            )
            assert writer.records_written == paused_written, "the writer counted records it could not write"
            assert await committed_offsets(drill.settings) == paused_offsets, (
                "offsets committed while ClickHouse was down"
            )
            await drill.start_front()
            up_at = time.monotonic()

            def everyone_after_restart() -> bool:
                return {a.user for a in load.acked(after=up_at)} == set(load.user_ids)

            await eventually(polled(everyone_after_restart), what="inserts after the restart")

            async def healthy() -> bool:
                return (await drill.api.call("GET", "/healthcheck"))[0] == 200

            await eventually(healthy, what="the healthcheck healthy again")
        finally:
            await load.stop()

    acked = load.acked()

    async def caught_up() -> bool:
        return (await blob_counts(drill.store, load.user_ids))[1] >= len(acked)

    await eventually(caught_up, timeout=60, what="the projections catching up")
    catch_up = time.monotonic() - up_at

    flushes = []
    for user in load.user_ids:
        status, body = await drill.api.call("POST", f"/users/buffer/{user}/chat")
        assert (status, body["errno"]) == (200, 0), body
        flushes.append(body["task_id"])
    expected_tasks = {a.task_id for a in acked} | set(flushes)

    async def all_ended() -> dict[str, set[str]] | None:
        statuses = await task_statuses(drill.store, load.user_ids)
        return statuses if expected_tasks <= statuses.keys() and not open_tasks(statuses) else None

    statuses = await eventually(all_ended, timeout=30, what="every task ended")
    stored = await stored_blob_ids(drill.store, load.user_ids)
    rows, final_rows = await blob_counts(drill.store, load.user_ids)
    report(
        "clickhouse-outage",
        users=USERS,
        inserts=len(load.answers),
        acked=len(acked),
        acked_during_outage=len([a for a in acked if down_at <= a.started and a.ended <= up_at]),
        outage_s=up_at - down_at,
        write_failures=write_failures.count,
        catch_up_s=catch_up,
        blob_rows=rows,
        blob_rows_final=final_rows,
        tasks_started=len(statuses),
        tasks_ended=len(statuses) - len(open_tasks(statuses)),
    )
    assert not load.unexpected() and not [a for a in load.answers if a.refused], (
        "an insert failed while only ClickHouse was down"
    )
    assert set(stored) == {a.blob_id for a in acked}, "acknowledged blobs lost, or blobs nobody acknowledged"
    assert final_rows == len(acked)
    twice = {b for b in stored if stored.count(b) > 1}
    assert not twice and rows == len(acked), (
        f"{rows - final_rows} blob rows written twice (FINAL hides them); "
        f"copies in the ingest log: {await blob_copies_in_log(drill.settings, twice)}"
    )
    assert statuses.keys() == expected_tasks
