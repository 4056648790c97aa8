"""The spine, end to end on the real broker and embedded ClickHouse, offline extractor."""

from tests.support.client import Api, chat, eventually, new_user


async def test_insert_buffer_flush_profile_event_context(api: Api) -> None:
    user = new_user()
    inserted = await api.ok("POST", f"/blobs/insert/{user}", json=chat("Hi, my name is Alice. I live in Paris."))
    blob_id, task_id = inserted["id"], inserted["task_id"]

    async def blob_readable():
        status, body = await api.call("GET", f"/blobs/{user}/{blob_id}")
        return body["data"] if body["errno"] == 0 else None

    blob = await eventually(blob_readable, what="blob readable")
    assert blob["blob_type"] == "chat"
    assert blob["blob_data"]["messages"][0]["content"].startswith("Hi, my name is Alice")
    assert (await api.ok("GET", f"/users/blobs/{user}/chat"))["ids"] == [blob_id]

    async def idle_ids():
        return (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "idle"}))["ids"]

    assert await eventually(idle_ids, what="blob idle in buffer") == [blob_id]
    assert (await api.ok("GET", f"/tasks/{task_id}"))["status"] == "running"

    results = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert len(results) == 1 and len(results[0]["add_profiles"]) == 2 and results[0]["event_id"]

    async def profiles():
        return (await api.ok("GET", f"/users/profile/{user}"))["profiles"]

    found = await eventually(profiles, what="profile rows")
    slots = {(p["attributes"]["topic"], p["attributes"]["sub_topic"]): p["content"] for p in found}
    assert slots == {("basic_info", "name"): "Alice", ("basic_info", "city"): "Paris"}
    assert {p["id"] for p in found} == set(results[0]["add_profiles"])

    events = (await api.ok("GET", f"/users/event/{user}"))["events"]
    assert [e["id"] for e in events] == [results[0]["event_id"]]
    assert "Alice" in events[0]["event_data"]["event_tip"]

    context = (await api.ok("GET", f"/users/context/{user}"))["context"]
    assert "basic_info::name: Alice" in context and "Paris" in context

    async def task_done():
        return (await api.ok("GET", f"/tasks/{task_id}"))["status"] == "completed"

    await eventually(task_done, what="insert task completed")

    async def done_ids():
        return (await api.ok("GET", f"/users/buffer/capacity/{user}/chat", params={"status": "done"}))["ids"]

    assert await eventually(done_ids, what="blob done") == [blob_id]


async def test_second_flush_updates_slot_in_place(api: Api) -> None:
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I like tea."))
    first = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("I love hiking."))
    second = await api.ok("POST", f"/users/buffer/{user}/chat", params={"wait_process": "true"})
    assert second[0]["update_profiles"] == first[0]["add_profiles"]

    async def likes():
        rows = (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
        return rows if rows and rows[0]["content"] == "tea, hiking" else None

    rows = await eventually(likes, what="merged slot")
    assert len(rows) == 1


async def test_flush_of_empty_buffer_completes_with_no_results(api: Api) -> None:
    assert await api.ok("POST", f"/users/buffer/{new_user()}/chat", params={"wait_process": "true"}) == []


async def test_users_crud(api: Api) -> None:
    user = new_user()
    assert (await api.ok("POST", "/users", json={"id": user, "data": {"plan": "pro"}}))["id"] == user
    assert (await api.ok("GET", f"/users/{user}"))["data"] == {"plan": "pro"}
    status, body = await api.call("POST", "/users", json={"id": user})
    assert (status, body["errno"]) == (200, 409)
    await api.ok("PUT", f"/users/{user}", json={"data": {"plan": "free"}})
    assert (await api.ok("GET", f"/users/{user}"))["data"] == {"plan": "free"}
    await api.ok("DELETE", f"/users/{user}")
    status, body = await api.call("GET", f"/users/{user}")
    assert (status, body["data"], body["errno"]) == (200, None, 404)
    generated = (await api.ok("POST", "/users", json={}))["id"]
    assert (await api.ok("GET", f"/users/{generated}"))["id"] == generated


async def test_delete_blob(api: Api) -> None:
    user = new_user()
    blob_id = (
        await api.ok("POST", f"/blobs/insert/{user}", json={"blob_type": "doc", "blob_data": {"content": "notes"}})
    )["id"]

    async def readable():
        return (await api.call("GET", f"/blobs/{user}/{blob_id}"))[1]["errno"] == 0

    await eventually(readable, what="doc blob readable")
    await api.ok("DELETE", f"/blobs/{user}/{blob_id}")
    status, body = await api.call("GET", f"/blobs/{user}/{blob_id}")
    assert body["errno"] == 404


async def test_task_status_memos_form(api: Api) -> None:
    task_id = (
        await api.ok("POST", f"/blobs/insert/{new_user()}", json={"blob_type": "doc", "blob_data": {"content": "x"}})
    )["task_id"]

    async def completed():
        status, body = await api.call("POST", "/get/status", json={"task_id": task_id})
        return body["errno"] == 0 and body["data"]["status"] == "completed"

    await eventually(completed, what="doc task completed")
    status, body = await api.call("POST", "/get/status", json={})
    assert (status, body["errno"]) == (422, 422) and "task_id" in body["errmsg"]
    status, body = await api.call("POST", "/get/status", json={"task_id": "missing"})
    assert (status, body["errno"]) == (200, 404)
