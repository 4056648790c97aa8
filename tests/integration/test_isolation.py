"""Projects keep tenants apart: a project token sees, lists, flushes and deletes only its own data."""

import uuid
from typing import Any

import pytest

from memstream.projects_admin import ProjectExists, create_project
from memstream.stack import Stack
from tests.support.client import Api, chat, eventually, new_user


@pytest.fixture(scope="module")
async def tenants(stack: Stack, api: Api) -> dict[str, Any]:
    """Project alpha with one user who has a flushed profile, an event and an unflushed blob; project beta."""
    suffix = uuid.uuid4().hex[:6]
    alpha = await create_project(stack.settings, f"alpha_{suffix}")
    beta = await create_project(stack.settings, f"beta_{suffix}")
    user = new_user()
    await api.ok("POST", "/users", json={"id": user, "data": {"owner": "alpha"}}, token=alpha)
    first = await api.ok("POST", f"/blobs/insert/{user}", json=chat("My name is Alma. I live in Lima."), token=alpha)
    await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"}, token=alpha)
    pending = await api.ok("POST", f"/blobs/insert/{user}", json=chat("I work as a pilot."), token=alpha)
    profiles = await api.ok("GET", f"/users/profile/{user}", token=alpha)
    events = await api.ok("GET", f"/users/event/{user}", token=alpha)
    return {
        "alpha": alpha,
        "beta": beta,
        "user": user,
        "blob": first["id"],
        "task": first["task_id"],
        "pending": pending["id"],
        "profile_id": profiles["profiles"][0]["id"],
        "event_id": events["events"][0]["id"],
        "alpha_name": f"alpha_{suffix}",
    }


async def errno(api: Api, method: str, path: str, token: str, **kwargs: Any) -> int:
    status, body = await api.call(method, path, token=token, **kwargs)
    assert status == 200, (status, body)
    return body["errno"]


async def test_tokens_are_checked(api: Api, tenants: dict[str, Any]) -> None:
    forged = tenants["alpha"].rsplit("-", 1)[0] + "-" + "0" * 48
    for token in (forged, "sk-nosuchproject-abc", "sk-", "plain"):
        status, body = await api.call("GET", f"/users/{tenants['user']}", token=token)
        assert status == 401 and body["errno"] == 401 and body["data"] is None


async def test_project_names_are_unique(stack: Stack, tenants: dict[str, Any]) -> None:
    with pytest.raises(ProjectExists):
        await create_project(stack.settings, tenants["alpha_name"])
    with pytest.raises(ValueError):
        await create_project(stack.settings, "Bad-Name")


async def test_other_project_cannot_read(api: Api, tenants: dict[str, Any]) -> None:
    user, beta = tenants["user"], tenants["beta"]
    assert await errno(api, "GET", f"/users/{user}", beta) == 404
    assert await errno(api, "GET", f"/blobs/{user}/{tenants['blob']}", beta) == 404
    assert await errno(api, "GET", f"/tasks/{tenants['task']}", beta) == 404
    assert (await api.ok("GET", f"/users/blobs/{user}/chat", token=beta))["ids"] == []
    assert (await api.ok("GET", f"/users/profile/{user}", token=beta))["profiles"] == []
    assert (await api.ok("GET", f"/users/event/{user}", token=beta))["events"] == []
    context = (await api.ok("GET", f"/users/context/{user}", token=beta))["context"]
    assert "Lima" not in context and "pilot" not in context
    listed = (await api.ok("GET", "/project/users", token=beta, params={"limit": "100"}))["users"]
    assert user not in {u["id"] for u in listed}
    mine = (await api.ok("GET", "/project/users", token=tenants["alpha"], params={"limit": "100"}))["users"]
    assert user in {u["id"] for u in mine}


async def test_other_project_cannot_change_or_flush(api: Api, tenants: dict[str, Any]) -> None:
    user, alpha, beta = tenants["user"], tenants["alpha"], tenants["beta"]
    assert await errno(api, "DELETE", f"/users/{user}", beta) == 404
    # a blob delete answers success whether or not the blob exists (as Memobase does); alpha's stays
    assert await errno(api, "DELETE", f"/blobs/{user}/{tenants['blob']}", beta) == 0
    assert await errno(api, "DELETE", f"/users/profile/{user}/{tenants['profile_id']}", beta) == 404
    body = {"content": "hijacked", "attributes": {"topic": "basic_info", "sub_topic": "name"}}
    assert await errno(api, "PUT", f"/users/profile/{user}/{tenants['profile_id']}", beta, json=body) == 404
    assert await errno(api, "DELETE", f"/users/event/{user}/{tenants['event_id']}", beta) == 404
    # beta flushing "the same" user flushes beta's (empty) buffer, never alpha's
    await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"}, token=beta)
    idle = await eventually(
        lambda: api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "idle"}, token=alpha),
        what="alpha's pending blob still idle",
    )
    assert idle["ids"] == [tenants["pending"]]
    profiles = (await api.ok("GET", f"/users/profile/{user}", token=alpha))["profiles"]
    assert {p["content"] for p in profiles} == {"Alma", "Lima"}
    assert (await api.ok("GET", f"/users/{user}", token=alpha))["data"] == {"owner": "alpha"}
    assert (await api.ok("GET", f"/blobs/{user}/{tenants['blob']}", token=alpha))["blob_type"] == "chat"
