"""Bad input is answered as DESIGN.md says, and nothing is written."""

import pytest

from tests.support.client import Api, chat, new_user


@pytest.mark.parametrize(
    "method,path,kwargs,status,errno,mentions",
    [
        ("POST", "/blobs/insert/{user}", {"data": "{not json", "headers": None}, 422, 422, "malformed JSON"),
        ("POST", "/blobs/insert/not-a-uuid", {"json": chat("hi")}, 422, 422, "user_id"),
        ("POST", "/blobs/insert/{user}", {"json": {"blob_type": "video", "blob_data": {}}}, 422, 422, "blob_type"),
        (
            "POST",
            "/blobs/insert/{user}",
            {"json": {"blob_type": "chat", "blob_data": {}}},
            422,
            422,
            "blob_data.messages",
        ),
        (
            "POST",
            "/blobs/insert/{user}",
            {"json": {"blob_type": "chat", "blob_data": {"messages": [{"role": "x", "content": "a"}]}}},
            422,
            422,
            "role",
        ),
        ("POST", "/blobs/insert/{user}", {"json": chat("hi"), "token": "wrong"}, 401, 401, "invalid token"),
        ("POST", "/users/buffer/{user}/movie", {}, 422, 422, "blob_type"),
        (
            "POST",
            "/blobs/insert/{user}",
            {"json": chat("hi"), "params": {"wait_process": "maybe"}},
            422,
            422,
            "wait_process",
        ),
        ("GET", "/blobs/{user}/not-a-uuid", {}, 422, 422, "blob_id"),
    ],
)
async def test_rejected_and_nothing_written(
    api: Api, method: str, path: str, kwargs: dict, status: int, errno: int, mentions: str
) -> None:
    user = new_user()
    kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
    got_status, body = await api.call(method, path.format(user=user), **kwargs)
    assert (got_status, body["errno"], body["data"]) == (status, errno, None)
    assert mentions in body["errmsg"]
    assert "Traceback" not in body["errmsg"]
    for blob_type in ("chat", "doc"):
        assert (await api.ok("GET", f"/users/blobs/{user}/{blob_type}"))["ids"] == []
    status_user, user_body = await api.call("GET", f"/users/{user}")
    assert user_body["errno"] == 404


async def test_missing_token_is_401_and_healthcheck_is_open(api: Api) -> None:
    async with api.session.get(api.base + "/users/" + new_user()) as r:
        assert r.status == 401 and (await r.json())["errno"] == 401
    async with api.session.get(api.base + "/healthcheck") as r:
        assert r.status == 200 and (await r.json())["errno"] == 0


async def test_unknown_route_uses_the_envelope(api: Api) -> None:
    status, body = await api.call("GET", "/no/such/thing")
    assert status == 404 and body["errno"] == 404 and body["data"] is None
