"""Fault drill: the broker stops in the middle of a load of inserts and starts again.

    load ─▶ api ─▶ broker ■ stopped (SIGTERM) ·········· started again (same port, same data dir) ─▶ …
                   inserts meanwhile: HTTP 503, errno 503     inserts: 200 again
                   projection writer, Faust worker            reconnect by themselves (measured)

The drill runs once per module (``outage``); the tests check what it left behind: every
acknowledged blob in ClickHouse exactly once and none answered 503 there; every task that
started has ended.

After the restart every consumer rejoins, and faust-streaming 0.15.3 can lose records around a
rebalance (it drops what it fetched but had not processed, acks the prefetched records it skips,
and aiokafka does not seek a partition with nothing committed). ``streams.gaps`` makes each agent
check that its offsets follow each other and read what was skipped from the broker; the agents
skip what they applied already (``streams.applied``), so ``test_every_task_started_has_ended``
holds that every task ends.

Except when the broker breaks its word: the local broker can lose the last records it
acknowledged when it is stopped under load (the first test sees it for ingest records), and a
task whose flush or end was lost cannot end. ``AckedWrites`` (a Faust sensor) notes every record
the worker's producer had acknowledged; if a task is stuck and the log no longer holds one of
those (or an acknowledged insert), the test is an xfail that names them. Measured on 2026-11-30
with two CPU burners beside it: tasks stuck in 3 of about 130 runs; in the two examined, the
extract agent's TaskFinished was acknowledged as the broker was stopping and its offset given to
another record after the restart. None in 30 runs on a quiet machine. Also seen in about one run in thirty: Faust takes nothing for a while after the rejoin (agents idle, app neither crashed
nor recovering); if the worker takes none of the blobs inserted after the restart within
``FAUST_GRACE`` seconds, the drill restarts it (as an operator would), warns with the evidence
and reports ``worker_restarted``.
"""

import time
import warnings
from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from tests.faults.support import (
    AckedWrites,
    Answer,
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

USERS = int(scaled(4, 12))
MIN_OUTAGE = scaled(0.0, 20.0)  # seconds; by default the outage lasts until every user was refused
FAUST_GRACE = scaled(15.0, 60.0)  # seconds the worker gets to take records again before the drill restarts it
TASKS_END = scaled(20.0, 60.0)  # seconds every task gets to end once every buffer was flushed


@dataclass
class Outage:
    drill: Drill
    load: InsertLoad
    stopping_at: float  # just before the broker was sent SIGTERM
    down_at: float  # once it had exited
    up_at: float  # once it listened again
    writer_back: float  # seconds from up_at until the writer wrote a blob inserted after it
    worker_back: float  # … until the buffer agent took one
    worker_restarted: str  # why the drill restarted the worker ("" when it did not)
    flushes: list[str]  # task ids of the flushes requested after the load
    acked_writes: AckedWrites  # what the worker's producer had acknowledged

    @property
    def expected_tasks(self) -> set[str]:
        return {a.task_id for a in self.load.acked() if a.task_id} | set(self.flushes)

    def report(self, **more: object) -> None:
        acked_after = self.load.acked(after=self.up_at)
        report(
            "broker-outage", users=USERS, inserts=len(self.load.answers), acked=len(self.load.acked()),
            refused=len([a for a in self.load.answers if a.refused]), outage_s=self.up_at - self.down_at,
            api_back_s=min(a.ended for a in acked_after) - self.up_at, writer_back_s=self.writer_back,
            worker_back_s=self.worker_back, worker_restarted=bool(self.worker_restarted), **more,
        )


async def unbuffered(drill: Drill, answers: list[Answer]) -> list[Answer]:
    """Those of ``answers`` whose blob the buffer agent has not taken (no BlobBuffered projected)."""
    rows = await drill.store.query(
        f"SELECT blob_id FROM {drill.store.database}.buffer WHERE has({{b:Array(String)}}, blob_id)",
        {"b": [a.blob_id for a in answers]},
    )
    taken = {row["blob_id"] for row in rows}
    return [a for a in answers if a.blob_id not in taken]


async def worker_back(drill: Drill, since_restart: list[Answer], acked_writes: AckedWrites) -> str:
    """Wait until the buffer agent takes any of ``since_restart``; restart the worker if it has not
    after ``FAUST_GRACE`` seconds. Returns the evidence that made the drill restart it, or ""."""

    async def taking() -> bool:
        return len(await unbuffered(drill, since_restart)) < len(since_restart)

    with LogCount("faust.tables.recovery", "No event received") as recovery_warnings:
        try:
            await eventually(taking, timeout=FAUST_GRACE, what="the worker taking blobs again")
            return ""
        except AssertionError:
            app = drill.stack.faust_app
            assert app is not None
            evidence = (f"none of the {len(since_restart)} blobs inserted since the broker restart taken after "
                        f"{FAUST_GRACE:g}s; app.in_recovery={app.in_recovery}, crashed={app.crashed}, "
                        f"{recovery_warnings.count} recovery warnings like {recovery_warnings.first!r}")
    warnings.warn(f"Faust did not recover by itself ({evidence}); restarting the worker", stacklevel=1)
    await drill.stack.stop_worker()
    await drill.stack.start_worker()
    acked_writes.watch(drill.stack.faust_app)
    await eventually(taking, timeout=60, what="the restarted worker taking blobs")
    return evidence


@pytest.fixture(scope="module")
async def outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outage]:
    async with drill_stack(tmp_path_factory.mktemp("broker-outage")) as drill:
        acked_writes = AckedWrites()
        acked_writes.watch(drill.stack.faust_app)
        load = InsertLoad(drill.api, users=USERS, per_user=int(scaled(200, 5000))).start()
        try:
            await eventually(polled(lambda: len(load.acked()) >= 3 * USERS), what="inserts acknowledged before the outage")
            stopping_at = time.monotonic()
            await drill.stop_broker()
            down_at = time.monotonic()

            def everyone_refused() -> bool:
                refused = {a.user for a in load.refused(after=down_at)}
                return len(refused) == USERS and time.monotonic() - down_at >= MIN_OUTAGE

            await eventually(polled(everyone_refused), timeout=MIN_OUTAGE + 30, what="every user refused with 503")
            await drill.start_broker()
            up_at = time.monotonic()

            def everyone_back() -> bool:
                return {a.user for a in load.acked(after=up_at)} == set(load.user_ids)

            await eventually(polled(everyone_back), timeout=60, what="every user's inserts acknowledged again")
        finally:
            await load.stop()
        since_restart = load.acked(after=up_at)

        async def written_again() -> bool:
            return bool(set(await stored_blob_ids(drill.store, load.user_ids)) & {a.blob_id for a in since_restart})

        await eventually(written_again, timeout=30, what="the projection writer writing again")
        writer_back = time.monotonic() - up_at
        restarted = await worker_back(drill, since_restart, acked_writes)
        taken_back = time.monotonic() - up_at

        flushes = []
        for user in load.user_ids:
            status, body = await drill.api.call("POST", f"/users/buffer/{user}/chat")
            assert (status, body["errno"]) == (200, 0), body
            flushes.append(body["task_id"])
        yield Outage(drill, load, stopping_at, down_at, up_at, writer_back, taken_back, restarted, flushes, acked_writes)


async def test_inserts_answer_503_during_the_outage_and_every_acknowledged_blob_is_stored_once(outage: Outage) -> None:
    drill, load = outage.drill, outage.load
    acked = {a.blob_id for a in load.acked()}
    in_log = await blob_copies_in_log(drill.settings, acked)
    # noida-db loses the last records it acknowledged (acks=all) before a SIGTERM: a broker quirk
    # (Kafka flushes on a controlled shutdown), told apart here by reading the log back.
    lost_by_broker = {b for b, copies in in_log.items() if not copies}
    if lost_by_broker:
        warnings.warn(f"the broker lost {len(lost_by_broker)} acknowledged records across its restart", stacklevel=1)

    async def all_written() -> list[str] | None:
        stored = await stored_blob_ids(drill.store, load.user_ids)
        return stored if acked - lost_by_broker <= set(stored) else None

    try:
        await eventually(all_written, timeout=30, what="every acknowledged blob in ClickHouse")
    except AssertionError:
        pass  # reported below, with what is there
    stored = await stored_blob_ids(drill.store, load.user_ids)
    rows, final_rows = await blob_counts(drill.store, load.user_ids)
    outage.report(blob_rows=rows, blob_rows_final=final_rows, acked_lost_by_broker=len(lost_by_broker))

    assert not load.unexpected(), f"answers other than 200 or a 503 envelope: {load.unexpected()[:5]}"
    refused = [a for a in load.answers if a.refused]
    assert refused and all("retry" in a.errmsg for a in refused), refused[:3]
    assert all(a.ended >= outage.stopping_at for a in refused), "a 503 while the broker was up"
    phantoms = set(stored) - acked
    assert not phantoms, f"{len(phantoms)} blobs stored although their insert was answered 503"
    lost = acked - lost_by_broker - set(stored)
    assert not lost, f"{len(lost)} acknowledged blobs, all in the log, not in ClickHouse"
    twice = {b for b in stored if stored.count(b) > 1}
    assert not twice, f"blob rows written twice; copies in the ingest log: { {b: in_log[b] for b in twice} }"
    assert final_rows == len(set(stored)) and len(acked - set(stored)) <= len(lost_by_broker)


async def test_every_task_started_has_ended(outage: Outage) -> None:
    drill, load = outage.drill, outage.load
    copies = await blob_copies_in_log(drill.settings, {a.blob_id for a in load.acked()})
    lost_by_broker = {a.task_id for a in load.acked() if not copies[a.blob_id]}  # see the test above
    started = outage.expected_tasks - lost_by_broker

    async def running() -> set[str]:
        return set(open_tasks(await task_statuses(drill.store, load.user_ids))) - lost_by_broker

    async def all_ended() -> dict[str, set[str]] | None:
        statuses = await task_statuses(drill.store, load.user_ids)
        return statuses if started <= statuses.keys() and not await running() else None

    try:
        await eventually(all_ended, timeout=TASKS_END, what="every task ended")
    except AssertionError:
        pass  # reported below
    statuses, still = await task_statuses(drill.store, load.user_ids), await running()
    skipped = await unbuffered(drill, [a for a in load.acked() if a.task_id in still])
    lost = await outage.acked_writes.lost(drill.settings) + sorted(lost_by_broker)
    outage.report(tasks_started=len(statuses), tasks_ended=len(statuses) - len(open_tasks(statuses)),
                  running_for_blobs_never_buffered=len(skipped), acked_writes_lost=len(lost))
    assert started <= statuses.keys(), "acknowledged requests (in the log) whose task never started"
    if still and lost:
        pytest.xfail(f"the broker lost {len(lost)} records it had acknowledged (e.g. {lost[:3]}), so "
                     f"{len(still)} tasks that needed them cannot end: a broker fault, not Memstream's")
    assert not still, (f"{len(still)} tasks still running, {len(skipped)} of them for blobs the buffer agent "
                       f"never took: {sorted(still)[:5]}")
