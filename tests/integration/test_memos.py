"""MemOS's product API (``/api/openmem/v1``) over raw HTTP, as a MemOS client sends it: async and
sync add, working memory at once, task status, search, paging, deletes, errors and projects."""

import uuid
from typing import Any

import pytest

from memstream.projects_admin import create_project
from memstream.stack import Stack
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, eventually, new_user
from tests.support.memory import change
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url})


class Memos:
    """A raw MemOS client on the test client's session: POSTs JSON with ``Authorization: Token <key>``."""

    def __init__(self, api: Api) -> None:
        self.base = api.base.removesuffix("/api/v1") + "/api/openmem/v1"
        self.token = api.token
        self.session = api.session

    async def call(
        self, path: str, body: Any = None, *, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        sent = {"Authorization": f"Token {token or self.token}"} if headers is None else headers
        async with self.session.post(self.base + path, json=body, headers=sent) as r:
            return r.status, await r.json()

    async def ok(self, path: str, body: Any, *, token: str | None = None) -> Any:
        status, answer = await self.call(path, body, token=token)
        assert (status, answer["code"], answer["message"]) == (200, 0, "ok"), (status, answer)
        return answer["data"]

    async def add(self, user: str, *lines: str, token: str | None = None, **more: Any) -> dict:
        messages = [{"role": "user", "content": line} for line in lines]
        body = {"user_id": user, "conversation_id": "conv-1", "messages": messages, **more}
        return await self.ok("/add/message", body, token=token)

    async def search(self, user: str, query: str, *, token: str | None = None, **more: Any) -> list[dict]:
        data = await self.ok("/search/memory", {"user_id": user, "query": query, **more}, token=token)
        assert data["preference_detail_list"] == []
        return data["memory_detail_list"]

    async def status(self, task_id: str, token: str | None = None) -> str:
        data = await self.ok("/get/status", {"task_id": task_id}, token=token)
        assert data["task_id"] == task_id
        return data["status"]

    async def page(self, user: str, page: int, size: int, token: str | None = None) -> dict:
        return await self.ok("/get/memory", {"user_id": user, "page": page, "size": size}, token=token)


@pytest.fixture(scope="module")
def memos(api: Api) -> Memos:
    return Memos(api)


def of_type(items: list[dict], kind: str) -> list[dict]:
    return [item for item in items if item["memory_type"] == kind]


async def remembered(memos: Memos, llm: ScriptedLLM, user: str, changes: list[dict], tip: str, **more: Any) -> dict:
    """A sync add whose scripted extraction makes ``changes`` and an event with ``tip``."""
    llm.script({"changes": changes, "event_tip": tip})
    added = await memos.add(user, f"about: {tip}", async_mode=False, **more)
    assert added["success"] is True and added["status"] == "completed", added
    return added


async def test_async_add_runs_until_the_chats_are_flushed(memos: Memos, api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    added = await memos.add(user, "I just adopted a cat called Miso.")
    assert added["success"] is True and added["status"] == "running"
    assert await memos.status(added["task_id"]) == "running"
    llm.script({"changes": [change("interest", "pet", "a cat called Miso")], "event_tip": "adopted Miso"})
    await api.ok("POST", f"/users/buffer/{user}/chat")  # not waiting: the status goes there by itself

    async def completed() -> bool:
        return await memos.status(added["task_id"]) == "completed"

    await eventually(completed, what="the add's task completed")
    slots = of_type(await memos.search(user, "cat"), "UserMemory")
    assert [s["memory_value"] for s in slots] == ["a cat called Miso"]


async def test_sync_add_answers_once_memory_holds_it(memos: Memos, llm: ScriptedLLM) -> None:
    user = new_user()
    added = await remembered(memos, llm, user, [change("basic_info", "city", "Lima")], "moved to Lima")
    assert await memos.status(added["task_id"]) == "completed"
    items = await memos.search(user, "which city is Lima in?")  # no waiting: a sync add is readable
    [slot] = of_type(items, "UserMemory")
    assert (slot["memory_key"], slot["memory_value"], slot["tags"]) == (
        "basic_info::city",
        "Lima",
        ["basic_info", "city"],
    )
    assert slot["status"] == "activated" and slot["relativity"] == 0.6667  # "city", "lima" of "which city lima"
    assert isinstance(slot["create_time"], int) and slot["update_time"] >= slot["create_time"] > 1.6e12
    assert of_type(items, "WorkingMemory") == []  # extracted: no longer working memory
    [event] = of_type(items, "LongTermMemory")
    assert event["memory_value"].startswith("moved to Lima")


async def test_working_memory_is_visible_at_once(memos: Memos) -> None:
    user = f"memos_user_{uuid.uuid4().hex[:8]}"  # a MemOS-style user id, not a UUID
    await memos.add(user, "I am planning a trip to Oslo.", tags=["travel"], info={"app": "planner"})
    [working] = await memos.search(user, "Oslo trip", conversation_id="conv-1")
    assert working["memory_type"] == "WorkingMemory"
    assert working["memory_value"] == "user: I am planning a trip to Oslo."
    assert (working["conversation_id"], working["tags"], working["relativity"]) == ("conv-1", ["travel"], 1.0)
    assert await memos.search(user, "Oslo trip", conversation_id="another") == []


async def test_search_ranks_events_and_honours_limit_and_relativity(memos: Memos, llm: ScriptedLLM) -> None:
    user = new_user()
    await remembered(memos, llm, user, [], "hiked in the Alps")
    await remembered(memos, llm, user, [], "baked sourdough bread")
    found = of_type(await memos.search(user, "sourdough bread alps"), "LongTermMemory")
    assert [e["memory_key"] for e in found] == ["baked sourdough bread", "hiked in the Alps"]
    assert found[0]["relativity"] > found[1]["relativity"] > 0
    limited = of_type(await memos.search(user, "sourdough bread alps", memory_limit_number=1), "LongTermMemory")
    assert [e["memory_key"] for e in limited] == ["baked sourdough bread"]
    strict = of_type(await memos.search(user, "sourdough bread alps", relativity=0.5), "LongTermMemory")
    assert [e["memory_key"] for e in strict] == ["baked sourdough bread"]


async def test_get_memory_pages_with_a_total(memos: Memos, llm: ScriptedLLM) -> None:
    user = new_user()
    await remembered(memos, llm, user, [change("work", "title", "pilot")], "became a pilot")
    await memos.add(user, "first pending chat")
    await memos.add(user, "second pending chat")
    first, second = await memos.page(user, 1, 3), await memos.page(user, 2, 3)
    assert (first["total"], second["total"], first["page"], second["size"]) == (4, 4, 1, 3)
    kinds = [i["memory_type"] for i in first["memory_detail_list"] + second["memory_detail_list"]]
    assert kinds == ["WorkingMemory", "WorkingMemory", "LongTermMemory", "UserMemory"]
    assert [i["memory_value"] for i in first["memory_detail_list"][:2]] == [
        "user: second pending chat",
        "user: first pending chat",
    ]
    assert (await memos.page(user, 3, 3))["memory_detail_list"] == []


async def test_delete_by_memory_ids(memos: Memos, llm: ScriptedLLM) -> None:
    user = new_user()
    await remembered(memos, llm, user, [change("interest", "sport", "tennis")], "plays tennis")
    await memos.add(user, "still pending")
    items = (await memos.page(user, 1, 10))["memory_detail_list"]
    by_type = {i["memory_type"]: i["id"] for i in items}
    unknown = str(uuid.uuid4())
    wanted = [by_type["UserMemory"], by_type["LongTermMemory"], unknown]
    deleted = await memos.ok("/delete/memory", {"memory_ids": wanted})
    assert deleted == {"success": True, "deleted_ids": wanted[:2], "not_found_ids": [unknown]}
    left = await memos.page(user, 1, 10)
    assert (left["total"], [i["id"] for i in left["memory_detail_list"]]) == (1, [by_type["WorkingMemory"]])
    await memos.ok("/delete/memory", {"memory_ids": [by_type["WorkingMemory"]]})
    assert (await memos.page(user, 1, 10))["total"] == 0


async def test_delete_a_user(memos: Memos, llm: ScriptedLLM) -> None:
    user = new_user()
    await remembered(memos, llm, user, [change("basic_info", "name", "Ines")], "introduced herself")
    await memos.add(user, "pending too")
    assert (await memos.page(user, 1, 10))["total"] == 3
    assert (await memos.ok("/delete/memory", {"user_id": user}))["success"] is True
    assert (await memos.page(user, 1, 10))["total"] == 0


async def test_errors_come_in_memos_envelope(memos: Memos) -> None:
    body = {"user_id": "u1", "conversation_id": "c", "messages": [{"role": "user", "content": "hi"}]}
    status, answer = await memos.call("/add/message", body, token="sk-nosuchproject-abc")
    assert (status, answer["code"], answer["data"], answer["message"]) == (401, 401, None, "invalid token")
    status, answer = await memos.call("/add/message", body, headers={})
    assert (status, answer["code"]) == (401, 401) and "Token <token>" in answer["message"]
    status, answer = await memos.call("/add/message", body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, answer["code"]) == (200, 0)  # Bearer works too
    status, answer = await memos.call("/add/message", {k: v for k, v in body.items() if k != "conversation_id"})
    assert (status, answer["code"]) == (422, 422) and "body.conversation_id" in answer["message"]
    status, answer = await memos.call("/add/message", {**body, "async_mode": "no"})
    assert (status, answer["code"]) == (422, 422) and "body.async_mode" in answer["message"]
    status, answer = await memos.call("/add/message", {**body, "user_id": "has space"})
    assert (status, answer["code"]) == (422, 422) and "body.user_id" in answer["message"]
    status, answer = await memos.call("/delete/memory", {})
    assert (status, answer["code"]) == (422, 422) and "memory_ids" in answer["message"]
    status, answer = await memos.call("/get/status", {"task_id": "no-such-task"})
    assert status == 200 and answer["code"] == 404 and "no-such-task" in answer["message"]
    status, answer = await memos.call("/no/such/route", {})
    assert (status, answer["code"]) == (404, 404) and answer["data"] is None


async def test_a_token_sees_only_its_project(memos: Memos, llm: ScriptedLLM, stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:6]
    alpha = await create_project(stack.settings, f"memos_alpha_{suffix}")
    beta = await create_project(stack.settings, f"memos_beta_{suffix}")
    user = new_user()
    llm.script({"changes": [change("basic_info", "city", "Quito")], "event_tip": "lives in Quito"})
    added = await memos.add(user, "I live in Quito", async_mode=False, token=alpha)
    await memos.add(user, "and I like jazz", token=alpha)
    mine = (await memos.page(user, 1, 10, token=alpha))["memory_detail_list"]
    assert len(mine) == 3
    assert await memos.search(user, "Quito jazz", token=beta) == []
    assert (await memos.page(user, 1, 10, token=beta))["total"] == 0
    status, answer = await memos.call("/get/status", {"task_id": added["task_id"]}, token=beta)
    assert status == 200 and answer["code"] == 404
    ids = [i["id"] for i in mine]
    assert (await memos.ok("/delete/memory", {"memory_ids": ids}, token=beta))["not_found_ids"] == ids
    await memos.ok("/delete/memory", {"user_id": user}, token=beta)
    assert (await memos.page(user, 1, 10, token=alpha))["total"] == 3
    assert await memos.status(added["task_id"], token=alpha) == "completed"
    assert len(await memos.search(user, "Quito jazz", token=alpha)) == 3
