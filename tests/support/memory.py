"""Building a user's memory through the real flow (scripted LLM answers) and reading it back."""

from typing import Any

from scripts.scripted_llm import ScriptedLLM
from tests.support.client import Api, chat, eventually


def change(topic: str, sub_topic: str, content: str, op: str = "add") -> dict[str, str]:
    return {"op": op, "topic": topic, "sub_topic": sub_topic, "content": content}


async def flush_with(api: Api, llm: ScriptedLLM, user: str, changes: list[dict], tip: str, said: str = "hello") -> str:
    """Insert one chat and flush it with ``changes``/``tip`` as the LLM's answer; returns the flush's task id."""
    llm.script({"changes": changes, "event_tip": tip})
    await api.ok("POST", f"/blobs/insert/{user}", json=chat(said))
    status, body = await api.call("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert status == 200 and body["errno"] == 0, body
    return body["task_id"]


async def profiles(api: Api, user: str, **params: Any) -> list[dict]:
    return (await api.ok("GET", f"/users/profile/{user}", params=params or None))["profiles"]


async def seeded(api: Api, llm: ScriptedLLM, user: str, changes: list[dict], tip: str = "seeded") -> list[dict]:
    """Flush ``changes`` for ``user`` and wait until the profile shows them all."""
    await flush_with(api, llm, user, changes, tip)

    async def shown() -> list[dict] | None:
        rows = await profiles(api, user)
        return rows if len(rows) >= len(changes) else None

    return await eventually(shown, what=f"{len(changes)} profile slots")


async def rejected(api: Api, path: str, query: dict[str, str]) -> str:
    """GET ``path`` with a bad ``query``: assert the 422 envelope and return its message."""
    status, body = await api.call("GET", path, params=query)
    assert (status, body["errno"], body["data"]) == (422, 422, None), body
    return body["errmsg"]


async def record_event(
    api: Api,
    llm: ScriptedLLM,
    user: str,
    tip: str,
    *,
    tags: dict[str, str] | None = None,
    changes: list[dict[str, str]] | None = None,
) -> str:
    """One flush whose scripted extraction yields an event with ``tip``; returns the event id once readable."""
    llm.script(
        {
            "changes": [{"op": "add", **c} for c in changes or []],
            "event_tip": tip,
            "event_tags": [{"tag": t, "value": v} for t, v in (tags or {}).items()],
        }
    )
    await api.ok("POST", f"/blobs/insert/{user}", json=chat(f"chat about: {tip}"))
    results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    event_id = results[0]["event_id"]

    async def readable() -> bool:
        return any(e["id"] == event_id for e in await events(api, user, topk=100))

    await eventually(readable, what=f"event {event_id} readable")
    return event_id


async def events(api: Api, user: str, **query: Any) -> list[dict[str, Any]]:
    return (await api.ok("GET", f"/users/event/{user}", params={k: str(v) for k, v in query.items()}))["events"]


async def search(api: Api, user: str, kind: str = "event", **query: Any) -> dict[str, Any]:
    return await api.ok("GET", f"/users/{kind}/search/{user}", params={k: str(v) for k, v in query.items()})


def tips(items: list[dict[str, Any]]) -> list[str]:
    return [e["event_data"]["event_tip"] for e in items]
