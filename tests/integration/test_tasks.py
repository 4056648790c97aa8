"""Task status (MemOS style): running → completed | failed, read by id and by the MemOS form,
and ``wait_timeout`` answering 504 while the task goes on."""

import asyncio
import time

import pytest
from aiohttp import web

from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user

TEA = {"changes": [{"op": "add", "topic": "interest", "sub_topic": "likes", "content": "tea"}], "event_tip": "tea"}


class SlowLLM(ScriptedLLM):
    """The scripted server, answering each chat completion after ``delay`` seconds."""

    delay = 0.0

    async def _chat(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return await super()._chat(request)


pytestmark = [
    pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url, "llm_max_attempts": 1}),
    pytest.mark.llm_server.with_args(SlowLLM),
]


async def statuses(api: Api, task_id: str) -> tuple[dict, dict]:
    """The task as ``GET /tasks/{id}`` and as ``POST /get/status`` answer it."""
    return await api.ok("GET", f"/tasks/{task_id}"), await api.ok("POST", "/get/status", json={"task_id": task_id})


async def test_task_runs_then_completes(api: Api, llm: SlowLLM) -> None:
    user = new_user()
    task_id = (await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like tea.")))["task_id"]

    async def running() -> tuple[dict, dict] | None:
        status, body = await api.call("GET", f"/tasks/{task_id}")
        return await statuses(api, task_id) if body["errno"] == 0 else None

    by_id, memos = await eventually(running, what="insert task readable")
    assert by_id == memos and by_id["status"] == "running" and by_id["error"] is None and by_id["results"] == []

    llm.script(TEA)
    status, flushed = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert flushed["errno"] == 0
    by_id, memos = await statuses(api, task_id)
    assert by_id == memos and by_id["status"] == "completed" and by_id["user_id"] == user
    assert by_id["results"] == flushed["data"] and len(by_id["results"][0]["add_profiles"]) == 1
    assert by_id["created_at"] < by_id["updated_at"]  # the start survives the end
    flush_task, _ = await statuses(api, flushed["task_id"])
    assert flush_task["status"] == "completed" and flush_task["results"] == flushed["data"]


async def test_broken_llm_answer_fails_the_task_with_the_error(api: Api, llm: SlowLLM) -> None:
    user = new_user()
    llm.script("not json", "still { not json")  # asked once more, malformed again: the only attempt fails
    task_id = (await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like coffee.")))["task_id"]
    status, body = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert (status, body["errno"]) == (200, 500) and "malformed LLM answer" in body["errmsg"]
    for task in (*await statuses(api, task_id), *await statuses(api, body["task_id"])):
        assert task["status"] == "failed" and "malformed LLM answer" in task["error"] and task["results"] == []


async def timed_out(api: Api, path: str, **kwargs: object) -> None:
    """``path`` with ``wait_process=true&wait_timeout=0.5`` answers 504 in about that time."""
    started = time.monotonic()
    status, body = await api.call("POST", path, params={"wait_process": "true", "wait_timeout": "0.5"}, **kwargs)
    assert (status, body["errno"], body["data"]) == (200, 504, None) and "still running" in body["errmsg"]
    assert time.monotonic() - started < 1.5  # the default wait is 30s here


async def test_wait_timeout_answers_504_and_the_task_goes_on(api: Api, llm: SlowLLM) -> None:
    user, importer = new_user(), new_user()
    task_id = (await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like tea.")))["task_id"]
    llm.delay = 2.0
    llm.script(TEA, TEA)
    try:
        await timed_out(api, f"/users/buffer/{user}/chat")
        assert (await api.ok("GET", f"/tasks/{task_id}"))["status"] == "running"
        await timed_out(api, f"/users/profile/import/{importer}", json={"context": "I like tea."})

        async def completed() -> dict | None:
            task = await api.ok("GET", f"/tasks/{task_id}")
            return task if task["status"] == "completed" else None

        task = await eventually(completed, what="the flush to finish after the timeout")
        assert len(task["results"][0]["add_profiles"]) == 1

        async def imported() -> list:
            return (await api.ok("GET", f"/users/profile/{importer}"))["profiles"]

        assert [p["content"] for p in await eventually(imported, what="the import to finish after the timeout")] == [
            "tea"
        ]
    finally:
        llm.delay = 0.0


async def test_unknown_task_is_404(api: Api) -> None:
    for status, body in (
        await api.call("GET", "/tasks/no-such-task"),
        await api.call("POST", "/get/status", json={"task_id": "no-such-task"}),
    ):
        assert (status, body["errno"], body["data"]) == (200, 404, None)
