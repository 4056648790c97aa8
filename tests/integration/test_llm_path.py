"""Extraction through the real ``openai`` client against a scripted OpenAI-compatible server."""

import json

import pytest
from aiokafka import AIOKafkaConsumer

from memstream.stack import Stack
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user

pytestmark = pytest.mark.stack_settings.with_args(lambda llm: {"llm_base_url": llm.base_url, "llm_max_attempts": 2})

ANSWER = {
    "changes": [
        {"op": "add", "topic": "Work", "sub_topic": "Title", "content": "pilot"},
        {"op": "delete", "topic": "basic_info", "sub_topic": "age", "content": ""},
    ],
    "event_tip": "Erin told us she flies planes.",
}


async def test_llm_answer_becomes_profile_and_event(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    llm.script(ANSWER)
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I fly planes for a living."))
    results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert len(results[0]["add_profiles"]) == 1 and results[0]["delete_profiles"] == []  # nothing to delete yet
    request = llm.requests[-1]
    assert request["response_format"]["type"] == "json_schema"
    assert "I fly planes for a living." in request["messages"][-1]["content"]

    async def profile():
        return (await api.ok("GET", f"/users/profile/{user}"))["profiles"]

    rows = await eventually(profile, what="profile from the LLM answer")
    assert [(r["attributes"], r["content"]) for r in rows] == [({"topic": "work", "sub_topic": "title"}, "pilot")]
    events = (await api.ok("GET", f"/users/event/{user}"))["events"]
    assert events[0]["event_data"]["event_tip"] == "Erin told us she flies planes."


async def test_malformed_answer_is_asked_again(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    llm.script(
        "this is not json",
        {"changes": [{"op": "add", "topic": "interest", "sub_topic": "likes", "content": "tea"}], "event_tip": "tea"},
    )
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like tea."))
    results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert len(results[0]["add_profiles"]) == 1


async def test_broken_llm_fails_the_task_and_dead_letters_the_flush(api: Api, llm: ScriptedLLM, stack: Stack) -> None:
    user = new_user()
    llm.script("nope", '{"changes": 5}', 500)  # attempt 1: malformed twice; attempt 2: HTTP 500
    inserted = await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like coffee."))
    status, body = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert status == 200 and body["errno"] == 500 and "LLM call failed" in body["errmsg"]
    task_id = body["task_id"]

    async def failed():
        return (await api.ok("GET", f"/tasks/{inserted['task_id']}"))["status"] == "failed"

    await eventually(failed, what="insert task failed")
    task = await api.ok("GET", f"/tasks/{task_id}")
    assert task["status"] == "failed" and "LLM call failed" in task["error"]

    async def failed_blobs():
        return (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "failed"}))["ids"]

    assert await eventually(failed_blobs, what="blob marked failed") == [inserted["id"]]

    consumer = AIOKafkaConsumer(
        stack.settings.topic_dead_letter,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=5000,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()
    letters = [json.loads(m.value) for msgs in batch.values() for m in msgs]
    assert [letter["flush_id"] for letter in letters] == [task_id]
