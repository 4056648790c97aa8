"""Project endpoints (profile config, users, usage, billing) and profile import, on a project of
this module's own, with the scripted LLM (10 input and 5 output tokens per call)."""

from datetime import UTC, datetime, timedelta

import pytest

from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user

PROJECT = "project-endpoints"
pytestmark = pytest.mark.stack_settings.with_args(
    lambda llm: {"llm_base_url": llm.base_url, "llm_max_attempts": 1, "default_project": PROJECT}
)

CONFIG = """language: en
additional_user_profiles:
  - topic: travel
    sub_topics:
      - name: next_trip
event_tags:
  - name: mood
"""
PILOT = {
    "changes": [{"op": "add", "topic": "work", "sub_topic": "title", "content": "pilot"}],
    "event_tip": "Imported: a pilot.",
}


async def test_profile_config_round_trip(api: Api) -> None:
    assert await api.ok("GET", "/project/profile_config") == {"profile_config": ""}
    assert await api.ok("POST", "/project/profile_config", json={"profile_config": CONFIG}) is None
    assert await api.ok("GET", "/project/profile_config") == {"profile_config": CONFIG}
    await api.ok("POST", "/project/profile_config", json={"profile_config": "language: fr\n"})
    assert await api.ok("GET", "/project/profile_config") == {"profile_config": "language: fr\n"}


async def test_invalid_config_is_refused_naming_line_and_key(api: Api) -> None:
    before = await api.ok("GET", "/project/profile_config")
    status, body = await api.call(
        "POST", "/project/profile_config", json={"profile_config": "language: en\n  bad: : x\n"}
    )
    assert (status, body["errno"], body["data"]) == (200, 400, None)
    assert "invalid YAML" in body["errmsg"] and "line 2" in body["errmsg"]
    status, body = await api.call(
        "POST", "/project/profile_config", json={"profile_config": "language: en\nstrict_mode: true\n"}
    )
    assert (status, body["errno"]) == (200, 400)
    assert "line 2" in body["errmsg"] and "strict_mode" in body["errmsg"]
    status, body = await api.call("POST", "/project/profile_config", json={"config": "language: en\n"})
    assert (status, body["errno"]) == (422, 422) and "profile_config" in body["errmsg"]
    assert await api.ok("GET", "/project/profile_config") == before


async def test_users_listing_searches_orders_and_pages(api: Api) -> None:
    marker = new_user()[:8]
    ids = [new_user() for _ in range(3)]
    for n, user in enumerate(ids):
        await api.ok("POST", "/users", json={"id": user, "data": {"team": marker, "n": n}})

    async def listing(**query: str) -> dict:
        return await api.ok("GET", "/project/users", params={"search": marker, **query})

    by_created = await listing(order_by="created_at", order_desc="false")
    assert by_created["count"] == 3 and [u["id"] for u in by_created["users"]] == ids
    first = by_created["users"][0]
    assert first["data"] == {"team": marker, "n": 0} and (first["profile_count"], first["event_count"]) == (0, 0)
    assert set(first) >= {"id", "data", "created_at", "updated_at"}
    newest_first = await listing(order_by="created_at", order_desc="true")
    assert [u["id"] for u in newest_first["users"]] == ids[::-1]
    page = await listing(order_by="created_at", order_desc="false", limit="2", offset="1")
    assert page["count"] == 3 and [u["id"] for u in page["users"]] == ids[1:]

    await api.ok("PUT", f"/users/{ids[0]}", json={"data": {"team": marker, "n": 9}})
    assert (await listing())["users"][0]["id"] == ids[0]  # default: updated_at, newest first
    by_id = await api.ok("GET", "/project/users", params={"search": ids[1][-12:].upper()})
    assert [u["id"] for u in by_id["users"]] == [ids[1]] and by_id["count"] == 1

    status, body = await api.call("GET", "/project/users", params={"order_by": "name"})
    assert (status, body["errno"]) == (422, 422) and "order_by" in body["errmsg"]


async def test_usage_and_billing_count_the_tokens_of_a_flush(api: Api, llm: ScriptedLLM) -> None:
    today = datetime.now(UTC).date()
    billing_before = await api.ok("GET", "/project/billing")
    usage_before = await api.ok("GET", "/project/usage", params={"last_days": "3"})
    assert [d["date"] for d in usage_before] == [(today - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert all(d["total_input_token"] == 0 for d in usage_before[:2])  # this project is new today

    user = new_user()
    llm.script(
        {"changes": [{"op": "add", "topic": "interest", "sub_topic": "likes", "content": "tea"}], "event_tip": "tea"}
    )
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like tea."))
    await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})

    async def usage_today() -> dict | None:
        day = (await api.ok("GET", "/project/usage", params={"last_days": "3"}))[-1]
        return day if day["total_llm_calls"] > usage_before[-1]["total_llm_calls"] else None

    day = await eventually(usage_today, what="the flush's usage row")
    before = usage_before[-1]
    assert day["total_input_token"] - before["total_input_token"] == 10
    assert day["total_output_token"] - before["total_output_token"] == 5
    assert day["total_llm_calls"] - before["total_llm_calls"] == 1
    assert day["total_insert"] == day["total_success_insert"] >= before["total_insert"] + 1
    assert set(day) == {
        "date",
        "total_insert",
        "total_success_insert",
        "total_input_token",
        "total_output_token",
        "total_llm_calls",
    }

    billing = await api.ok("GET", "/project/billing")
    assert billing["token_left"] is None and billing["next_refill_at"] is None  # no quota in Memstream
    assert billing["project_token_cost_month"] - billing_before["project_token_cost_month"] == 15


async def test_profile_import_flushes_the_text(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("Earlier chat, still buffered."))
    llm.script(PILOT)
    text = "I have flown planes for twenty years."
    imported = await api.ok(
        "POST", f"/users/profile/import/{user}", params={"wait_process": "true"}, json={"context": text}
    )
    assert len(imported["chat_results"]) == 1 and len(imported["chat_results"][0]["add_profiles"]) == 1
    assert text in llm.requests[-1]["messages"][-1]["content"]
    assert "Earlier chat, still buffered." in llm.requests[-1]["messages"][-1]["content"]  # the flush covers the buffer
    task = await api.ok("GET", f"/tasks/{imported['task_id']}")
    assert task["status"] == "completed" and task["results"] == imported["chat_results"]
    profiles = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    assert [(p["attributes"], p["content"]) for p in profiles] == [({"topic": "work", "sub_topic": "title"}, "pilot")]
    blob = await api.ok("GET", f"/blobs/{user}/{imported['id']}")
    assert blob["blob_data"]["messages"] == [{"role": "user", "content": text}]
    listed = await api.ok("GET", "/project/users", params={"search": user, "order_by": "profile_count"})
    assert [(u["id"], u["profile_count"], u["event_count"]) for u in listed["users"]] == [(user, 1, 1)]


async def test_profile_import_without_waiting_returns_its_task(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    llm.script(PILOT)
    imported = await api.ok("POST", f"/users/profile/import/{user}", json={"context": "I fly planes."})
    assert set(imported) == {"id", "task_id"}

    async def completed() -> bool:
        status, body = await api.call("GET", f"/tasks/{imported['task_id']}")
        return body["errno"] == 0 and body["data"]["status"] == "completed"

    await eventually(completed, what="import task completed")

    async def profile() -> list:
        return (await api.ok("GET", f"/users/profile/{user}"))["profiles"]

    assert [p["content"] for p in await eventually(profile, what="imported profile")] == ["pilot"]
    status, body = await api.call("POST", f"/users/profile/import/{user}", json={"context": ""})
    assert (status, body["errno"]) == (422, 422) and "context" in body["errmsg"]
