"""Building a user's memory through the real flow (scripted LLM answers) and reading it back."""

from typing import Any

from tests.support.client import Api, chat, eventually
from scripts.scripted_llm import ScriptedLLM


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
