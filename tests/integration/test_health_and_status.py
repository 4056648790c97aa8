"""The healthcheck tells the truth, and the status endpoint shows the pipeline's lag and dead letters."""

from memstream.projects_admin import create_project
from memstream.stack import Stack
from tests.support.client import Api, chat, eventually, new_user
from tests.support.records import publish_raw


async def test_healthcheck_answers_503_naming_a_stopped_part_then_200_again(api: Api, stack: Stack) -> None:
    assert await api.call("GET", "/healthcheck") == (200, {"data": None, "errno": 0, "errmsg": ""})
    writer = stack.writer
    assert writer is not None
    await writer.stop()  # the writer's loop is gone, the process is not
    try:
        status, body = await api.call("GET", "/healthcheck")
        assert (status, body["errno"], body["data"]) == (503, 503, None)
        assert body["errmsg"] == "the projection writer is not running"
    finally:
        await stack.stop_worker()
        await stack.start_worker()
    assert (await api.call("GET", "/healthcheck"))[0] == 200


async def test_status_shows_lag_per_partition_and_dead_letters_by_reason(api: Api, stack: Stack) -> None:
    settings = stack.settings
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat("hello"))

    def undecodable(status: dict) -> int:
        return sum(
            row["count"]
            for row in status["dead_letters"]
            if row["kind"] == "undecodable" and row["reason"].startswith("not JSON")
        )

    before = undecodable(await api.ok("GET", "/status"))  # other tests of this stack park records too
    await publish_raw(settings, settings.topic_ingest, f"default:{user}", b"not a record")

    async def parked() -> dict | None:
        data = await api.ok("GET", "/status")
        return data if undecodable(data) == before + 1 else None

    status = await eventually(parked, what="the dead letter in the status")
    assert status["healthy"] and status["problems"] == []
    owner = status["groups"][settings.app_id]
    assert sorted(row["partition"] for row in owner) == list(range(settings.topic_partitions))
    assert all(row["topic"] == settings.topic_ingest and row["lag"] >= 0 for row in owner)
    assert {row["topic"] for row in status["groups"][settings.projection_group]} == {
        settings.topic_memory,
        settings.topic_projects,
        settings.topic_dead_letter,
    }

    async def caught_up() -> bool:
        groups = (await api.ok("GET", "/status"))["groups"]
        return all(row["lag"] == 0 for rows in groups.values() for row in rows)

    await eventually(caught_up, what="every group caught up (lag 0)")


async def test_status_needs_the_root_token(api: Api, stack: Stack) -> None:
    token = await create_project(stack.settings, f"status_{new_user()[:8]}")
    status, body = await api.call("GET", "/status", token=token)
    assert (status, body["errno"]) == (403, 403) and "root token" in body["errmsg"]
