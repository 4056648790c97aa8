"""Fault drill: the LLM times out, answers HTTP 500, answers malformed JSON; then it is back.

    flush ──▶ owner ───▶ LLM ✗ (llm_max_attempts tries, the delay doubling from llm_backoff;
                                 a malformed answer is asked once more within a try)
                          └──▶ dead-letter topic (error header) + the flush's tasks end `failed`
    LLM back ──▶ replay_dead_letters ──▶ FlushReplayed (ingest) ──▶ owner ──▶ the same tasks end `completed`

Bounded: each LLM call gives up after TIMEOUT, a stalled reply ends by itself after STALL, every
wait has a deadline; the scripted LLM listens on loopback only.
"""

import asyncio
import time
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from memstream.dead_letters import DeadLetterReplay, replay_dead_letters
from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store
from scripts.scripted_llm import ScriptedLLM
from streams.records import ProfileEdited
from tests.faults.support import stored_blob_ids, task_statuses, tasks_balance
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import messages_in, partitions

TIMEOUT = 0.5  # settings.llm_timeout
STALL = "\x00stall"  # a scripted reply that comes only after the client gave up
STALL_FOR = 2 * TIMEOUT
# Per fault: one try's scripted replies (the calls the LLM sees per try), and what the task's error says.
FAULTS = {
    "timeout": ([STALL], "APITimeoutError"),
    "http 500": ([500], "Error code: 500"),
    "malformed json": (["this is not json", '{"changes": 5}'], "malformed LLM answer"),  # asked once more
}
BACK = {
    "changes": [{"op": "add", "topic": "interest", "sub_topic": "drink", "content": "coffee"}],
    "event_tip": "Coffee.",
}


class FaultyLLM(ScriptedLLM):
    """The scripted LLM, which can also stall, and notes when each chat call arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def _chat(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        if self.replies and self.replies[0] == STALL:
            self.replies.pop(0)
            self.requests.append(await request.json())
            await asyncio.sleep(STALL_FOR)  # the fault itself: by now the client has timed out
            return web.json_response({"error": {"message": "too late"}}, status=504)
        return await super()._chat(request)


pytestmark = [
    pytest.mark.llm_server.with_args(FaultyLLM),
    pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url, "llm_timeout": TIMEOUT}),
]


@dataclass(frozen=True)
class Parked:
    fault: str
    user: str
    blob_id: str
    insert_task: str
    flush_task: str  # also the flush id
    calls: int  # chat calls the LLM saw for this flush
    attempt_gaps: list[float]  # seconds between the starts of consecutive tries


async def topic_size(settings: Settings, topic: str) -> int:
    """The records ``topic`` holds (committed; transaction markers take offsets too, so not the end offsets)."""
    return len(await messages_in(settings, partitions(settings, topic)))


async def parked_errors(settings: Settings) -> list[str]:
    return [
        dict(m.headers)["error"].decode()
        for m in await messages_in(settings, partitions(settings, settings.topic_dead_letter))
    ]


async def fail_flush(api: Api, llm: FaultyLLM, stack: Stack, fault: str) -> Parked:
    """A chat and a flush the LLM fails on every try; returns once the flush's task ended."""
    user, (per_try, _) = new_user(), FAULTS[fault]
    seen = len(llm.requests)
    llm.script(*per_try * stack.settings.llm_max_attempts)
    inserted = await api.ok("POST", f"/blobs/insert/{user}", json=chat("I drink coffee every morning."))
    status, body = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert status == 200 and body["errno"] == 500, (fault, body)
    starts = llm.arrivals[seen :: len(per_try)]
    return Parked(
        fault,
        user,
        inserted["id"],
        inserted["task_id"],
        body["task_id"],
        len(llm.requests) - seen,
        [later - earlier for earlier, later in zip(starts, starts[1:])],
    )


async def park_odd_records(settings: Settings) -> None:
    """What else lands on the dead-letter topic: an undecodable record and a command that is not a flush."""
    edit = ProfileEdited(project_id=settings.default_project, user_id=new_user(), op="delete", profile_id=new_user())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in ((b"default:x", b"\xffnot a record"), (edit.key, edit.model_dump_json().encode())):
            await producer.send_and_wait(
                settings.topic_dead_letter, value, key=key, headers=[("error", b"RuntimeError: drill")]
            )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def parked(api: Api, llm: FaultyLLM, stack: Stack) -> dict[str, Parked]:
    """One failed flush per fault, one of a user deleted afterwards, and two records that are not flushes."""
    flushes = {fault: await fail_flush(api, llm, stack, fault) for fault in FAULTS}
    gone = await fail_flush(api, llm, stack, "http 500")
    await api.ok("DELETE", f"/users/{gone.user}")
    await park_odd_records(stack.settings)

    async def all_parked() -> bool:
        return await topic_size(stack.settings, stack.settings.topic_dead_letter) == len(flushes) + 3

    await eventually(all_parked, what="every failed flush on the dead-letter topic")
    return {**flushes, "deleted user": gone}


@pytest.mark.parametrize("fault", FAULTS)
async def test_tries_are_bounded_with_backoff_then_the_task_fails(
    fault: str, parked: dict[str, Parked], api: Api, llm: FaultyLLM, stack: Stack
) -> None:
    flush, settings = parked[fault], stack.settings
    per_try, error = FAULTS[fault]
    assert flush.calls == settings.llm_max_attempts * len(per_try)
    assert len(flush.attempt_gaps) == settings.llm_max_attempts - 1
    for n, gap in enumerate(flush.attempt_gaps):
        assert gap >= settings.llm_backoff * 2**n, f"try {n + 2} came {gap:.3f}s after the one before"
    for task_id in (flush.insert_task, flush.flush_task):
        task = await api.ok("GET", f"/tasks/{task_id}")
        assert task["status"] == "failed" and error in task["error"], task
    failed = await api.ok("GET", f"/users/buffer/capacity/{flush.user}/chat", params={"status": "failed"})
    assert failed["ids"] == [flush.blob_id]
    assert llm.replies == []  # every scripted failure was used, no more


@pytest.fixture(scope="module")
async def replayed(
    parked: dict[str, Parked], llm: FaultyLLM, stack: Stack, store: Store
) -> tuple[DeadLetterReplay, int]:
    """The LLM answers again; the parked flushes are replayed. Also: how many calls the replay cost."""
    seen = len(llm.requests)
    llm.script(*[BACK] * len(FAULTS))
    return await replay_dead_letters(stack.settings), seen


async def test_replay_resends_each_parked_flush_and_reports_the_rest(
    replayed: tuple[DeadLetterReplay, int], parked: dict[str, Parked]
) -> None:
    outcome = replayed[0]
    assert sorted(d.flush_id for d in outcome.replayed) == sorted(
        parked[f].flush_task for f in [*FAULTS, "deleted user"]
    )
    assert all(d.error for d in outcome.replayed)  # each carries the error it was parked with
    assert [(d.kind, d.not_replayed) for d in outcome.reported] == [("other", "not a parked flush")] * 2


async def test_the_replay_of_a_user_deleted_since_is_refused_by_the_owner(
    replayed: tuple[DeadLetterReplay, int], parked: dict[str, Parked], stack: Stack, store: Store
) -> None:
    await refused_again(stack.settings, parked["deleted user"].user)
    assert await stored_blob_ids(store, [parked["deleted user"].user]) == []


async def refused_again(settings: Settings, user: str) -> None:
    async def refused() -> list[str]:
        return [e for e in await parked_errors(settings) if e == f"user {user} no longer exists"]

    await eventually(refused, what="the deleted user's replay parked with its reason")


async def test_replayed_flushes_complete_their_tasks_and_write_the_profile_once(
    replayed: tuple[DeadLetterReplay, int], parked: dict[str, Parked], api: Api, llm: FaultyLLM, store: Store
) -> None:
    flushes = [parked[f] for f in FAULTS]
    for flush in flushes:

        async def completed() -> bool:
            tasks = [await api.ok("GET", f"/tasks/{t}") for t in (flush.insert_task, flush.flush_task)]  # noqa: B023 - awaited in this iteration
            return all(t["status"] == "completed" and t["error"] is None for t in tasks)

        await eventually(completed, what=f"the tasks of the {flush.fault} flush completed")
        profile = (await api.ok("GET", f"/users/profile/{flush.user}"))["profiles"]
        assert [(p["attributes"], p["content"]) for p in profile] == [
            ({"topic": "interest", "sub_topic": "drink"}, "coffee")
        ]
        done = await api.ok("GET", f"/users/buffer/capacity/{flush.user}/chat", params={"status": "done"})
        assert done["ids"] == [flush.blob_id]
    assert len(llm.requests) - replayed[1] == len(flushes) and llm.replies == []  # one call per replayed flush

    users = [flush.user for flush in flushes]
    for table in ("profiles", "profile_history"):  # no FINAL: a slot written twice would show twice
        rows = await store.query(
            f"SELECT user_id FROM {store.database}.{table} WHERE has({{u:Array(String)}}, user_id)", {"u": users}
        )
        assert sorted(r["user_id"] for r in rows) == sorted(users), table
    assert sorted(await stored_blob_ids(store, users)) == sorted(flush.blob_id for flush in flushes)  # acked = stored
    started, ended = await tasks_balance(store, users)
    assert started == ended == 2 * len(flushes)
    assert all(
        statuses == {"running", "failed", "completed"} for statuses in (await task_statuses(store, users)).values()
    )
    assert await stored_blob_ids(store, [parked["deleted user"].user]) == []  # the deleted user stays deleted
    # Billed: every call that got an answer (the malformed ones, not timeouts or 500s) and each replay's call.
    expected = parked["malformed json"].calls + len(flushes)
    billed = await eventually(
        lambda: store.query(
            f"SELECT sum(calls) AS calls FROM {store.database}.usage FINAL WHERE has({{u:Array(String)}}, user_id) "
            "HAVING calls = {n:UInt64}",
            {"u": users, "n": expected},
        ),
        what="the failed tries and the replayed calls billed",
    )
    assert billed[0]["calls"] == expected


async def test_a_second_run_replays_nothing(
    replayed: tuple[DeadLetterReplay, int], parked: dict[str, Parked], stack: Stack
) -> None:
    await refused_again(stack.settings, parked["deleted user"].user)
    ingest_before = await topic_size(stack.settings, stack.settings.topic_ingest)
    again = await replay_dead_letters(stack.settings)
    assert again.replayed == []  # what was parked since the first run: only the refused replay, reported
    assert [(d.kind, d.not_replayed) for d in again.reported] == [("other", "not a parked flush")]
    assert await topic_size(stack.settings, stack.settings.topic_ingest) == ingest_before
