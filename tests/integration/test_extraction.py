"""The extract agent end to end (scripted LLM and embeddings, real broker and ClickHouse):
merging into existing slots, the project config in the call and in strict mode, event tags,
usage, embeddings and gists, manual profile edits and event rewrites.

Records are published straight to the stack's topics under a project of each test's own, so a
project config set by one test cannot change another's.
"""

import json
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from memstream.settings import Settings
from memstream.stack import Stack
from projections.store import Store
from scripts.broker import free_port
from scripts.scripted_llm import ScriptedLLM, embed
from streams.records import (
    BlobInserted,
    BlobType,
    BufferFlushed,
    EventData,
    EventEdited,
    FlushRequested,
    ProfileEdited,
    ProjectConfigSet,
    Record,
)
from tests.support.client import eventually
from tests.support.records import ensure_project, parked_messages, publish
from tests.support.stack import started

pytestmark = pytest.mark.stack_settings.with_args(
    lambda llm: {"llm_base_url": llm.base_url, "embedding_base_url": llm.base_url}
)

CONFIG = """
language: Spanish
profile_strict_mode: true
event_theme_requirement: what the user wants to eat
overwrite_user_profiles:
  - topic: food
    description: what the user eats
    sub_topics:
      - name: likes
        description: dishes the user enjoys
        update_description: add new dishes to the list
event_tags:
  - name: mood
    description: how the user feels about food
"""


def new_ids() -> tuple[str, str]:
    return f"proj-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())


async def send(stack: Stack, *records: Record) -> None:
    for project in {r.project_id for r in records}:
        await ensure_project(stack.settings, project)
    await publish(stack.settings, stack.settings.topic_ingest, *records)


async def rows(store: Store, sql: str, project: str, user: str) -> list[dict[str, Any]]:
    """``sql`` over ``{db}``, with ``{p:String}``/``{u:String}`` bound to the test's project and user."""
    return await store.query(sql.format(db=store.database), {"p": project, "u": user})


async def request_flush(stack: Stack, project: str, user: str, line: str) -> str:
    """Buffer one chat line and ask for a flush; returns the flush's task id (also its flush id)."""
    task = str(uuid.uuid4())
    blob = BlobInserted(
        project_id=project,
        user_id=user,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type=BlobType.chat,
        blob_data={"messages": [{"role": "user", "content": line}]},
        created_at=datetime.now(UTC),
    )
    await send(stack, blob, FlushRequested(project_id=project, user_id=user, blob_type=BlobType.chat, task_id=task))
    return task


async def task_statuses(store: Store, project: str, task: str) -> list[str]:
    """The end statuses the task has reached (empty while it runs)."""
    found = await store.query(
        f"SELECT status FROM {store.database}.tasks FINAL WHERE project_id = {{p:String}} AND task_id = {{t:String}}",
        {"p": project, "t": task},
    )
    return [r["status"] for r in found if r["status"] != "running"]


async def flush(stack: Stack, store: Store, project: str, user: str, line: str) -> str:
    """Buffer one chat line and flush it; returns the flush id once its task has completed."""
    task = await request_flush(stack, project, user, line)
    assert await eventually(lambda: task_statuses(store, project, task), what=f"flush {task} finished") == ["completed"]
    return task


PROFILES = (
    "SELECT toString(profile_id) AS id, topic, sub_topic, content FROM {db}.profiles FINAL "
    "WHERE project_id = {{p:String}} AND user_id = {{u:String}} AND is_deleted = 0 ORDER BY topic, sub_topic"
)
HISTORY = (
    "SELECT toString(profile_id) AS id, op, content, source, source_id FROM {db}.profile_history FINAL "
    "WHERE project_id = {{p:String}} AND user_id = {{u:String}} ORDER BY version"
)
EVENTS = (
    "SELECT toString(event_id) AS id, event_tip, tags, tag_pairs, embedding, created_at FROM {db}.events FINAL "
    "WHERE project_id = {{p:String}} AND user_id = {{u:String}} AND is_deleted = 0"
)
USAGE = (
    "SELECT usage_id, model, calls, input_tokens, output_tokens FROM {db}.usage FINAL "
    "WHERE project_id = {{p:String}} AND user_id = {{u:String}}"
)
GISTS = (
    "SELECT toString(gist_id) AS id, content, embedding FROM {db}.event_gists FINAL "
    "WHERE project_id = {{p:String}} AND user_id = {{u:String}} AND is_deleted = 0 ORDER BY content"
)


def stored_vector(text: str) -> list[float]:
    """The scripted embedding of ``text`` as ClickHouse gives it back (Float32)."""
    return [struct.unpack("f", struct.pack("f", v))[0] for v in embed(text)]


def answer(*changes: tuple[str, str, str, str], tip: str = "lunch talk", tags: list[dict] | None = None) -> dict:
    body: dict[str, Any] = {
        "changes": [dict(zip(("op", "topic", "sub_topic", "content"), c)) for c in changes],
        "event_tip": tip,
    }
    if tags is not None:
        body["event_tags"] = tags
    return body


async def test_second_flush_merges_into_the_existing_slot(stack: Stack, store: Store, llm: ScriptedLLM) -> None:
    project, user = new_ids()
    llm.script(answer(("add", "work", "title", "pilot")))
    await flush(stack, store, project, user, "I fly planes.")
    first = await eventually(lambda: rows(store, PROFILES, project, user), what="first slot")
    llm.script(answer(("update", "Work", "Title", "pilot, flight instructor")))
    await flush(stack, store, project, user, "I also teach flying now.")
    assert "work::title = pilot" in llm.requests[-1]["messages"][-1]["content"]  # the model saw the slot

    async def merged() -> list[dict[str, Any]]:
        found = await rows(store, PROFILES, project, user)
        return found if found and found[0]["content"] != "pilot" else []

    assert await eventually(merged, what="merged slot") == [{**first[0], "content": "pilot, flight instructor"}]
    history = await eventually(lambda: rows(store, HISTORY, project, user), what="history")
    assert [(h["op"], h["source"]) for h in history] == [("add", "flush"), ("update", "flush")]


async def test_project_config_shapes_the_call_and_strict_mode_keeps_configured_slots(
    stack: Stack, store: Store, llm: ScriptedLLM
) -> None:
    project, user = new_ids()
    await publish(
        stack.settings, stack.settings.topic_projects, ProjectConfigSet(project_id=project, config_yaml=CONFIG)
    )
    llm.script(
        answer(
            ("add", "food", "likes", "paella"),
            ("add", "work", "title", "chef"),
            tags=[{"tag": "mood", "value": "hungry"}, {"tag": "weather", "value": "sunny"}],
        )
    )
    await flush(stack, store, project, user, "Quiero paella, I am a chef.")
    request = llm.requests[-1]
    system = request["messages"][0]["content"]
    assert "- food: what the user eats" in system and "likes: dishes the user enjoys" in system
    assert "add new dishes to the list" in system and "basic_info" not in system
    assert "- mood: how the user feels about food" in system and "Spanish" in system
    assert "what the user wants to eat" in system
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["event_tags"]["items"]["properties"]["tag"]["enum"] == ["mood"]

    profile = await eventually(lambda: rows(store, PROFILES, project, user), what="profile")
    assert [(r["topic"], r["sub_topic"], r["content"]) for r in profile] == [("food", "likes", "paella")]
    events = await eventually(lambda: rows(store, EVENTS, project, user), what="event")
    assert (events[0]["tags"], events[0]["tag_pairs"]) == (["mood"], ["mood=hungry"])

    [spent] = await eventually(lambda: rows(store, USAGE, project, user), what="usage row")
    assert (spent["model"], spent["calls"], spent["input_tokens"], spent["output_tokens"]) == (
        stack.settings.llm_model,
        1,
        10,
        5,
    )


async def test_events_and_gists_are_embedded(stack: Stack, store: Store, llm: ScriptedLLM) -> None:
    project, user = new_ids()
    llm.script(answer(("add", "interest", "likes", "tea"), tip="Ann drinks tea daily. She hates rain."))
    calls = len(llm.embedding_requests)
    await flush(stack, store, project, user, "I drink tea every day and I hate rain.")
    [event] = await eventually(lambda: rows(store, EVENTS, project, user), what="event")
    assert event["embedding"] == stored_vector("Ann drinks tea daily. She hates rain.")
    gists = await eventually(lambda: rows(store, GISTS, project, user), what="gists")
    assert sorted(g["content"] for g in gists) == ["Ann drinks tea daily.", "She hates rain.", "interest / likes: tea"]
    assert all(g["embedding"] == stored_vector(g["content"]) for g in gists)
    assert len(llm.embedding_requests) == calls + 1  # the tip and its gists in one call


async def test_manual_edits_add_update_move_delete(stack: Stack, store: Store, llm: ScriptedLLM) -> None:
    project, user = new_ids()
    await publish(
        stack.settings, stack.settings.topic_projects, ProjectConfigSet(project_id=project, config_yaml=CONFIG)
    )

    def edit(op: str, **fields: str) -> ProfileEdited:
        return ProfileEdited(project_id=project, user_id=user, op=op, **fields)

    add = edit("add", topic="Work", sub_topic="title", content="pilot")  # strict mode does not apply
    await send(stack, add)
    [added] = await eventually(lambda: rows(store, PROFILES, project, user), what="added slot")
    title_id = added["id"]
    update = edit("update", profile_id=title_id, content="captain")
    await send(stack, update)

    async def profile_is(expected: list[tuple[str, str, str, str]]) -> bool:
        found = await rows(store, PROFILES, project, user)
        return [(r["id"], r["topic"], r["sub_topic"], r["content"]) for r in found] == expected

    await eventually(lambda: profile_is([(title_id, "work", "title", "captain")]), what="updated slot")

    move = edit("update", profile_id=title_id, topic="career", sub_topic="role")
    await send(stack, move)
    await eventually(lambda: profile_is([(title_id, "career", "role", "captain")]), what="moved slot, same id")
    await flush(stack, store, project, user, "hello")  # the aggregate follows the edits
    assert "career::role = captain" in llm.requests[-1]["messages"][-1]["content"]

    delete = edit("delete", profile_id=title_id)
    await send(stack, delete)
    await eventually(lambda: profile_is([]), what="deleted slot")
    history = await rows(store, HISTORY, project, user)
    assert [(h["id"], h["op"], h["content"], h["source"], h["source_id"]) for h in history] == [
        (title_id, "add", "pilot", "manual", add.record_id),
        (title_id, "update", "captain", "manual", update.record_id),
        (title_id, "update", "captain", "manual", move.record_id),
        (title_id, "delete", "", "manual", delete.record_id),
    ]


async def test_event_edit_reembeds_and_retires_old_gists(stack: Stack, store: Store, llm: ScriptedLLM) -> None:
    project, user = new_ids()
    llm.script(answer(tip="Ann likes tea. Ann hates rain."))
    await flush(stack, store, project, user, "tea yes, rain no")
    [event] = await eventually(lambda: rows(store, EVENTS, project, user), what="event")
    old = await eventually(lambda: rows(store, GISTS, project, user), what="gists")
    assert len(old) == 2

    rewrite = EventData(event_tip="Ann loves coffee.")
    edited = EventEdited(
        project_id=project,
        user_id=user,
        event_id=event["id"],
        event_data=rewrite,
        created_at=event["created_at"],
        gist_ids=[g["id"] for g in old],
    )
    await send(stack, edited)

    async def rewritten() -> list[dict[str, Any]]:
        found = await rows(store, EVENTS, project, user)
        return found if found and found[0]["event_tip"] == "Ann loves coffee." else []

    [after] = await eventually(rewritten, what="rewritten event")
    assert (after["id"], after["created_at"]) == (event["id"], event["created_at"])
    assert after["embedding"] == stored_vector("Ann loves coffee.")
    gists = await rows(store, GISTS, project, user)
    assert [(g["content"], g["embedding"]) for g in gists] == [
        ("Ann loves coffee.", stored_vector("Ann loves coffee."))
    ]


async def test_embedding_failure_fails_the_flush_like_an_llm_failure(
    make_settings: Callable[..., Settings], store: Store, llm: ScriptedLLM
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    failing = await started(make_settings(llm_base_url=llm.base_url, embedding_base_url=unreachable), store)
    try:
        project, user = new_ids()
        llm.script(answer(("add", "interest", "likes", "tea")))
        task = await request_flush(failing, project, user, "I like tea.")
        assert await eventually(lambda: task_statuses(store, project, task), what="flush failed") == ["failed"]
        [error] = await store.query(
            f"SELECT error FROM {store.database}.tasks FINAL WHERE task_id = {{t:String}} AND status = 'failed'",
            {"t": task},
        )
        assert "embedding call failed" in error["error"]
        assert await rows(store, PROFILES, project, user) == []  # nothing half-written
        spent = await eventually(lambda: rows(store, USAGE, project, user), what="usage of the failed flush")
        assert [(u["calls"], u["input_tokens"]) for u in spent] == [(1, 10)]  # the LLM answered once: billed

        edited = EventEdited(
            project_id=project,
            user_id=user,
            event_id=str(uuid.uuid4()),
            event_data=EventData(event_tip="tea"),
            created_at=datetime.now(UTC),
        )
        await send(failing, edited)
        letters = await eventually(lambda: dead_letters(failing.settings, 2), what="dead letters")
        assert sorted(letters) == sorted([task, edited.record_id])
    finally:
        await failing.stop()


async def dead_letters(settings: Settings, count: int) -> list[str]:
    """The flush or edit ids of the records parked on the dead-letter topic, once there are ``count``."""
    ids = []
    for message in await parked_messages(settings):
        parked = json.loads(message.value)
        ids.append(
            parked["flush_id"] if parked["kind"] == BufferFlushed.model_fields["kind"].default else parked["record_id"]
        )
    return ids if len(ids) >= count else []
