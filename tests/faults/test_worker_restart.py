"""Fault drill: the worker is stopped in the middle of a flush and started again.

    insert + flush (users 1..n) ─▶ owner ─▶ LLM holds its first answer
    stack.stop_worker() (what SIGTERM does in ``memstream worker``) ─▶ waits for the job under way
    (``MEMSTREAM_SHUTDOWN_GRACE``) ─▶ the answer is released ─▶ its facts are committed ─▶ the stop
    completes ─▶ stack.start_worker() ─▶ every task ends

The drill runs once per module (``restart``); the tests check what it left behind.

- Every task ends ``completed`` or ``failed``, none stays ``running``; each slot has one
  ``profiles`` row (FINAL) and one change per flush in ``profile_history``.
- The owner commits each batch's facts, its users' memory and its ingest position in one
  transaction, so the restarted worker resumes right after what the stopped one committed: the
  LLM is asked once per flush and every slot keeps its ``add`` (a second extraction, against the
  profile the first one built, would have turned it into ``update``).
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from projections.store import Store
from scripts.scripted_llm import ScriptedLLM
from tests.faults.support import PROJECT, Drill, drill_stack, open_tasks, report, scaled, task_statuses
from tests.support.client import chat, eventually, new_user

USERS = int(scaled(3, 10))
HOLD = 30.0  # seconds the held answer waits at most: the drill never hangs on it
STOP_WAIT = 2.0  # seconds the drill watches the stop wait for the flush in hand
NAME = re.compile(r"my name is (\w+) and I live in (\w+)")


class HeldLLM(ScriptedLLM):
    """Answers each extraction from its chats (``my name is X and I live in Y`` → two slots), so an
    extraction asked again is answered the same; holds the first request until ``release``, so the
    worker can be stopped while a flush waits on the LLM."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    def reply_to(self, body: dict[str, Any]) -> str:
        return json.dumps(answer_for(body))

    async def _chat(self, request: web.Request) -> web.Response:
        if not self.holding.is_set():
            self.holding.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.release.wait(), HOLD)
        return await super()._chat(request)

    def asked_for(self) -> list[str]:
        """The name of each extraction asked, in order."""
        return [name for body in self.requests for name, _ in NAME.findall(json.dumps(body["messages"]))]


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    said = " ".join(str(m.get("content", "")) for m in body["messages"])
    changes = [
        {"op": "add", "topic": "basic_info", "sub_topic": sub_topic, "content": content}
        for name, city in NAME.findall(said)
        for sub_topic, content in (("name", name), ("city", city))
    ]
    return {"changes": changes, "event_tip": "introduced themselves"}


pytestmark = pytest.mark.llm_server.with_args(HeldLLM)


@dataclass
class Restart:
    drill: Drill
    llm: HeldLLM
    users: dict[str, tuple[str, str]]  # user → (name, city)
    flushes: dict[str, str]  # user → task id of its flush
    stop_waited: bool  # the stop was still waiting for the held flush after STOP_WAIT
    stop_s: float
    start_s: float
    ended_s: float  # from the restart until every task ended
    statuses: dict[str, set[str]]

    def report(self, **more: object) -> None:
        report(
            "worker-restart",
            users=USERS,
            stop_waited_for_the_flush=self.stop_waited,
            stop_s=self.stop_s,
            start_s=self.start_s,
            tasks_ended_s=self.ended_s,
            llm_requests=len(self.llm.requests),
            tasks_started=len(self.statuses),
            tasks_ended=len(self.statuses) - len(open_tasks(self.statuses)),
            **more,
        )


@pytest.fixture(scope="module")
async def restart(tmp_path_factory: pytest.TempPathFactory, llm: HeldLLM) -> AsyncIterator[Restart]:
    async with drill_stack(
        tmp_path_factory.mktemp("worker-restart"),
        llm_base_url=llm.base_url,
        llm_timeout=HOLD + 5,
        max_chat_blob_buffer_token_size=1024,
    ) as drill:
        users = {new_user(): (f"Name{i}", f"City{i}") for i in range(USERS)}
        flushes: dict[str, str] = {}
        for user, (name, city) in users.items():
            await drill.api.ok(
                "POST", f"/blobs/insert/{user}", json=chat(f"Hello, my name is {name} and I live in {city}.")
            )
            status, body = await drill.api.call("POST", f"/users/buffer/{user}/chat")
            assert (status, body["errno"]) == (200, 0), body
            flushes[user] = body["task_id"]

        await asyncio.wait_for(llm.holding.wait(), 30)  # an extraction waits on the LLM now
        stopping = time.monotonic()
        stop = asyncio.create_task(drill.stack.stop_worker())
        done, _ = await asyncio.wait([stop], timeout=STOP_WAIT)
        llm.release.set()
        await stop
        stop_s = time.monotonic() - stopping
        starting = time.monotonic()
        await drill.stack.start_worker()
        start_s = time.monotonic() - starting

        async def all_ended() -> dict[str, set[str]] | None:
            statuses = await task_statuses(drill.store, list(users))
            return statuses if set(flushes.values()) <= statuses.keys() and not open_tasks(statuses) else None

        try:
            statuses = await eventually(all_ended, timeout=60, what="every task ended")
        except AssertionError as exc:
            statuses = await task_statuses(drill.store, list(users))
            stuck = {
                u[:8]: (t, statuses.get(t))
                for u, t in flushes.items()
                if t in open_tasks(statuses) or t not in statuses
            }
            raise AssertionError(
                f"{exc}: stuck flushes {stuck}, extractions asked {llm.asked_for()}, "
                f"statuses {sorted(map(sorted, statuses.values()))}"
            ) from None
        yield Restart(drill, llm, users, flushes, not done, stop_s, start_s, time.monotonic() - starting, statuses)


async def slots(store: Store, users: list[str], final: bool) -> list[dict[str, Any]]:
    """Per user and slot: profile rows, and history rows and distinct changes per flush that made it."""
    db, scope, f = (
        store.database,
        "project_id = {p:String} AND has({u:Array(String)}, user_id)",
        " FINAL" if final else "",
    )
    return await store.query(
        f"""SELECT p.user_id AS user_id, p.topic AS topic, p.sub_topic AS sub_topic, p.rows AS rows,
                   h.source_id AS source_id, h.rows AS history_rows, h.changes AS changes, h.ops AS ops
            FROM (SELECT user_id, topic, sub_topic, any(profile_id) AS profile_id, count() AS rows
                  FROM {db}.profiles{f} WHERE {scope} GROUP BY user_id, topic, sub_topic) AS p
            LEFT JOIN (SELECT user_id, profile_id, source_id, count() AS rows, uniqExact(change_id) AS changes,
                              groupArray(op) AS ops
                       FROM {db}.profile_history{f} WHERE {scope} GROUP BY user_id, profile_id, source_id) AS h
                   ON h.user_id = p.user_id AND h.profile_id = p.profile_id
            ORDER BY user_id, topic, sub_topic""",
        {"p": PROJECT, "u": users},
    )


async def test_every_task_ends_and_each_slot_is_one_row_with_one_change_per_flush(restart: Restart) -> None:
    drill, users = restart.drill, restart.users

    async def two_slots_each() -> list[dict[str, Any]] | None:
        rows = await slots(drill.store, list(users), final=True)
        return rows if len(rows) == 2 * USERS else None

    final = await eventually(two_slots_each, what="two slots per user")
    raw = await slots(drill.store, list(users), final=False)
    restart.report(
        profile_rows=sum(r["rows"] for r in raw),
        history_rows=sum(r["history_rows"] for r in raw),
        profile_rows_final=sum(r["rows"] for r in final),
    )

    assert restart.stop_waited, "the worker stopped without waiting for the job under way"
    assert all(s & {"completed", "failed"} for s in restart.statuses.values()), "a task still running"
    for task_id in restart.flushes.values():
        assert (await drill.api.ok("GET", f"/tasks/{task_id}"))["status"] == "completed"
    expected = sorted((user, "basic_info", sub) for user in users for sub in ("city", "name"))
    assert [(r["user_id"], r["topic"], r["sub_topic"]) for r in final] == expected
    for row in final:
        # one row, one change, made by the user's flush (a requested flush's id is its task id)
        assert (row["rows"], row["history_rows"], row["changes"]) == (1, 1, 1), row
        assert row["source_id"] == restart.flushes[row["user_id"]], row
    assert all(r["changes"] == 1 for r in raw), [r for r in raw if r["changes"] != 1]
    for user, (name, city) in users.items():
        profile = (await drill.api.ok("GET", f"/users/profile/{user}"))["profiles"]
        assert sorted(p["content"] for p in profile) == sorted([name, city])


async def test_no_flush_is_extracted_again_after_the_restart(restart: Restart) -> None:
    drill, users = restart.drill, restart.users
    asked = restart.llm.asked_for()
    final = await slots(drill.store, list(users), final=True)
    results = {
        user: (await drill.api.ok("GET", f"/tasks/{task_id}"))["results"] for user, task_id in restart.flushes.items()
    }
    restart.report(extracted_twice=sorted(n for n in set(asked) if asked.count(n) > 1))
    assert sorted(asked) == sorted(name for name, _ in users.values()), f"extractions asked: {asked}"
    for user, result in results.items():
        assert [(len(r["add_profiles"]), r["update_profiles"]) for r in result] == [(2, [])], (user, result)
    assert all(r["ops"] == ["add"] for r in final), [r for r in final if r["ops"] != ["add"]]
