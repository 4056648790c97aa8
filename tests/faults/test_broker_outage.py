"""Fault drill: the broker goes away in the middle of a load of inserts and comes back.

    load ─▶ api ─▶ broker ■ gone ···························· back ─▶ …
                   inserts meanwhile: HTTP 503, errno 503     inserts: 200 again
                   owner, projection writer, task waiters     reconnect by themselves (measured)

The broker "goes away" at the harness's proxy (``LocalBroker.take_down``): every connection is cut
and new ones are refused, which is what clients see of a crashed broker. The local broker itself
keeps running, because stopping it can lose writes it had acknowledged (a bug of the stand-in,
not of Kafka), which would make the drill measure the stand-in instead of Memstream.

The drill runs once per module (``outage``); the tests check what it left behind: every
acknowledged blob in ClickHouse exactly once and none answered 503 there; every task that
started has ended. The owner's partitions fail their transactions while the broker is away and
are started again from what was committed (state topic + committed offsets); that redelivery
changes nothing.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.faults.support import (
    Answer,
    Drill,
    InsertLoad,
    blob_copies_in_log,
    blob_counts,
    drill_stack,
    open_tasks,
    polled,
    report,
    scaled,
    stored_blob_ids,
    task_statuses,
    worker_state,
)
from tests.support.client import eventually
from tests.support.records import group_offsets, messages_in, partitions

USERS = int(scaled(4, 12))
MIN_OUTAGE = scaled(0.0, 20.0)  # seconds; by default the outage lasts until every user was refused
TASKS_END = scaled(20.0, 60.0)  # seconds every task gets to end once every buffer was flushed


@dataclass
class Outage:
    drill: Drill
    load: InsertLoad
    stopping_at: float  # just before the broker was taken away
    down_at: float  # once every connection to it was cut
    up_at: float  # once it took connections again
    writer_back: float  # seconds from up_at until a blob inserted after it was written
    flushes: list[str]  # task ids of the flushes requested after the load

    @property
    def expected_tasks(self) -> set[str]:
        return {a.task_id for a in self.load.acked() if a.task_id} | set(self.flushes)

    def report(self, **more: object) -> None:
        acked_after = self.load.acked(after=self.up_at)
        report(
            "broker-outage",
            users=USERS,
            inserts=len(self.load.answers),
            acked=len(self.load.acked()),
            refused=len([a for a in self.load.answers if a.refused]),
            outage_s=self.up_at - self.down_at,
            api_back_s=min(a.ended for a in acked_after) - self.up_at,
            pipeline_back_s=self.writer_back,
            **more,
        )


async def unbuffered(drill: Drill, answers: list[Answer]) -> list[Answer]:
    """Those of ``answers`` whose blob the owner has not taken (no buffer row projected)."""
    rows = await drill.store.query(
        f"SELECT blob_id FROM {drill.store.database}.buffer WHERE has({{b:Array(String)}}, blob_id)",
        {"b": [a.blob_id for a in answers]},
    )
    taken = {row["blob_id"] for row in rows}
    return [a for a in answers if a.blob_id not in taken]


async def where_in_log(drill: Drill, blob_ids: set[str]) -> dict[str, dict[str, list[str]]]:
    """Where each blob is in the ingest and memory topics (partition:offset and kind): the evidence."""
    settings = drill.settings
    found: dict[str, dict[str, list[str]]] = {b: {"ingest": [], "memory": []} for b in blob_ids}
    for topic, name in ((settings.topic_ingest, "ingest"), (settings.topic_memory, "memory")):
        for message in await messages_in(settings, partitions(settings, topic)):
            for blob_id in blob_ids:
                if blob_id.encode() in (message.value or b""):
                    found[blob_id][name].append(f"{message.partition}:{message.offset}")
    owner = await group_offsets(settings, settings.app_id, settings.topic_ingest)
    return {**found, "owner committed": {str(tp.partition): [str(o)] for tp, o in owner.items()}}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
async def outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outage]:
    async with drill_stack(tmp_path_factory.mktemp("broker-outage")) as drill:
        load = InsertLoad(drill.api, users=USERS, per_user=int(scaled(200, 5000))).start()
        try:
            await eventually(
                polled(lambda: len(load.acked()) >= 3 * USERS), what="inserts acknowledged before the outage"
            )
            stopping_at = time.monotonic()
            await drill.take_broker_away()
            down_at = time.monotonic()

            def everyone_refused() -> bool:
                refused = {a.user for a in load.refused(after=down_at)}
                return len(refused) == USERS and time.monotonic() - down_at >= MIN_OUTAGE

            await eventually(polled(everyone_refused), timeout=MIN_OUTAGE + 30, what="every user refused with 503")
            await drill.bring_broker_back()
            up_at = time.monotonic()

            def everyone_back() -> bool:
                return {a.user for a in load.acked(after=up_at)} == set(load.user_ids)

            await eventually(polled(everyone_back), timeout=60, what="every user's inserts acknowledged again")
        finally:
            await load.stop()
        since_restart = load.acked(after=up_at)

        async def written_again() -> bool:
            return bool(set(await stored_blob_ids(drill.store, load.user_ids)) & {a.blob_id for a in since_restart})

        await eventually(written_again, timeout=60, what="blobs inserted after the outage written again")
        writer_back = time.monotonic() - up_at

        flushes = []
        for user in load.user_ids:
            status, body = await drill.api.call("POST", f"/users/buffer/{user}/chat")
            assert (status, body["errno"]) == (200, 0), body
            flushes.append(body["task_id"])
        yield Outage(drill, load, stopping_at, down_at, up_at, writer_back, flushes)


async def test_inserts_answer_503_during_the_outage_and_every_acknowledged_blob_is_stored_once(outage: Outage) -> None:
    drill, load = outage.drill, outage.load
    acked = {a.blob_id for a in load.acked()}

    async def all_written() -> list[str] | None:
        stored = await stored_blob_ids(drill.store, load.user_ids)
        return stored if acked <= set(stored) else None

    try:
        await eventually(all_written, timeout=30, what="every acknowledged blob in ClickHouse")
    except AssertionError:
        pass  # reported below, with what is there
    stored = await stored_blob_ids(drill.store, load.user_ids)
    rows, final_rows = await blob_counts(drill.store, load.user_ids)
    in_log = await blob_copies_in_log(drill.settings, acked | set(stored))
    outage.report(blob_rows=rows, blob_rows_final=final_rows)

    assert not load.unexpected(), f"answers other than 200 or a 503 envelope: {load.unexpected()[:5]}"
    refused = [a for a in load.answers if a.refused]
    assert refused and all("retry" in a.errmsg for a in refused), refused[:3]
    assert all(a.ended >= outage.stopping_at for a in refused), "a 503 while the broker was up"
    phantoms = set(stored) - acked
    assert not phantoms, (
        f"{len(phantoms)} blobs stored although their insert was answered 503 (copies in the log: "
        f"{ {b: in_log[b] for b in phantoms} })"
    )
    lost = acked - set(stored)
    assert not lost, f"{len(lost)} acknowledged blobs not in ClickHouse: {await where_in_log(drill, lost)}"
    twice = {b for b in stored if stored.count(b) > 1}
    assert not twice, f"blob rows written twice; copies in the ingest log: { {b: in_log[b] for b in twice} }"
    assert final_rows == len(set(stored))


async def test_every_task_started_has_ended(outage: Outage) -> None:
    drill, load = outage.drill, outage.load
    started = outage.expected_tasks

    async def all_ended() -> dict[str, set[str]] | None:
        statuses = await task_statuses(drill.store, load.user_ids)
        return statuses if started <= statuses.keys() and not open_tasks(statuses) else None

    try:
        await eventually(all_ended, timeout=TASKS_END, what="every task ended")
    except AssertionError:
        pass  # reported below
    statuses = await task_statuses(drill.store, load.user_ids)
    still = open_tasks(statuses)
    skipped = await unbuffered(drill, [a for a in load.acked() if a.task_id in still])
    outage.report(
        tasks_started=len(statuses), tasks_ended=len(statuses) - len(still), running_for_blobs_never_taken=len(skipped)
    )
    assert started <= statuses.keys(), "acknowledged requests whose task never started"
    assert not still, (
        f"{len(still)} tasks still running, {len(skipped)} of them for blobs the owner "
        f"never took: {sorted(still)[:5]}; {worker_state(drill.stack)}"
    )
