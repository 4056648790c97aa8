"""The history the replay and rebuild tests replay: a bit of every record the log can hold, in a
project of its own (``history_settings``), and reading its rows back."""

from typing import Any

from memstream.settings import Settings
from memstream.stack import Stack
from projections.replay import replayed_topics
from projections.store import Store
from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import messages_in, partitions, publish_raw

PROJECT = "replay-check"


def history_settings(llm: ScriptedLLM) -> dict[str, Any]:
    """The stack settings ``make_history`` needs: the scripted LLM and embedder, and its project."""
    return {"llm_base_url": llm.base_url, "embedding_base_url": llm.base_url, "default_project": PROJECT}


CONFIG = "event_tags:\n  - name: mood\n"
FIRST = {
    "changes": [
        {"op": "add", "topic": "basic_info", "sub_topic": "name", "content": "Alice"},
        {"op": "add", "topic": "basic_info", "sub_topic": "city", "content": "Paris"},
    ],
    "event_tip": "Alice introduced herself.",
    "event_tags": [{"tag": "mood", "value": "cheerful"}],
}
SECOND = {
    "changes": [
        {"op": "update", "topic": "basic_info", "sub_topic": "city", "content": "Lyon"},
        {"op": "add", "topic": "interest", "sub_topic": "likes", "content": "jazz"},
    ],
    "event_tip": "Alice moved to Lyon.",
}
GONE = {"changes": [{"op": "add", "topic": "work", "sub_topic": "title", "content": "baker"}], "event_tip": "A baker."}


async def log_size(settings: Settings) -> int:
    """How many records (committed, transaction markers aside) the topics the writer consumes hold now."""
    return len(await messages_in(settings, partitions(settings, *replayed_topics(settings))))


async def make_history(api: Api, llm: ScriptedLLM, stack: Stack) -> None:
    """A bit of everything: config, users created/updated/deleted, flushes that add, update and
    tag, a manual profile edit, a deleted blob, a stored doc, a chat left in the buffer and a
    record a producer sent that cannot be read (parked on the dead letters)."""
    await api.ok("POST", "/project/profile_config", json={"profile_config": CONFIG})
    alice, bob, carol = new_user(), new_user(), new_user()
    await api.ok("POST", "/users", json={"id": alice, "data": {"plan": "free"}})
    await api.ok("POST", f"/blobs/insert/{alice}", json=chat("Hi, I am Alice."))
    dropped = await api.ok("POST", f"/blobs/insert/{alice}", json=chat("Ignore this one."))

    async def deleted() -> bool:  # once the blob is readable
        return (await api.call("DELETE", f"/blobs/{alice}/{dropped['id']}"))[1]["errno"] == 0

    await eventually(deleted, what="the blob deleted")
    await api.ok("POST", f"/blobs/insert/{alice}", json=chat("I live in Paris."))
    llm.script(FIRST, SECOND, GONE)
    await api.ok("POST", f"/users/buffer/{alice}/chat", params={"wait_process": "true"})
    await api.ok(
        "POST", f"/blobs/insert/{alice}", params={"wait_process": "true"}, json=chat("I moved to Lyon; I love jazz.")
    )
    await api.ok("POST", f"/users/buffer/{alice}/chat", params={"wait_process": "true"})
    await api.ok("PUT", f"/users/{alice}", json={"data": {"plan": "pro"}})
    likes = next(
        p
        for p in (await api.ok("GET", f"/users/profile/{alice}"))["profiles"]
        if p["attributes"]["sub_topic"] == "likes"
    )
    await api.ok(
        "PUT",
        f"/users/profile/{alice}/{likes['id']}",
        json={"content": "jazz, blues", "attributes": {"topic": "interest", "sub_topic": "likes"}},
    )

    await api.ok("POST", f"/blobs/insert/{bob}", json=chat("I bake bread."))
    await api.ok("POST", f"/users/buffer/{bob}/chat", params={"wait_process": "true"})
    await api.ok("DELETE", f"/users/{bob}")

    await api.ok(
        "POST",
        f"/blobs/insert/{carol}",
        params={"wait_process": "true"},
        json={"blob_type": "doc", "blob_data": {"content": "Carol's notes"}},
    )
    await api.ok("POST", f"/blobs/insert/{carol}", params={"wait_process": "true"}, json=chat("Still in the buffer."))
    await publish_raw(stack.settings, stack.settings.topic_ingest, f"{PROJECT}:{carol}", b"{not json")  # a dead letter

    async def projected() -> bool:
        assert stack.writer is not None
        return stack.writer.records_written == await log_size(stack.settings)

    await eventually(projected, what="the projection writer to catch up with the log")


async def table_rows(store: Store, table: str) -> list[tuple]:
    rows = await store.query(
        f"SELECT * FROM {store.database}.{table} FINAL WHERE project_id = {{p:String}} ORDER BY ALL", {"p": PROJECT}
    )
    return [tuple(row.values()) for row in rows]
