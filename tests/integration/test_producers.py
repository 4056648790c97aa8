"""Producers that publish to the ingest topic themselves (docs/producers.md): the example producer
runs against the real stack and its conversation becomes a profile read through the API; what it
sends is what the committed schema describes; a project that does not exist ends in the dead
letters and failed tasks, and stops no one else; so does a record keyed other than its user.

Malformed and oversized records published straight to the ingest topic are covered by
``test_hostile_inputs.test_records_a_producer_publishes_that_cannot_be_taken_go_to_the_dead_letters``."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from api.models import new_blob
from api.positions import partition_of
from memstream.schema import INGEST_FILE, SCHEMA_DIR
from memstream.stack import Stack
from projections.store import Store
from projections.tasks import get_task
from streams.records import COMMANDS, BlobType, encode
from tests.support.client import Api, eventually, new_user
from tests.support.records import messages_in, parked_messages, publish_raw

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "produce_chats.py"
RUN_TIMEOUT = 30.0


async def produce(stack: Stack, project: str, user: str) -> dict[str, str]:
    """Run the example producer for ``user`` of ``project``: the task id it printed for each record kind."""
    settings = stack.settings
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        settings.kafka_bootstrap,
        "--topic",
        settings.topic_ingest,
        "--project",
        project,
        "--user",
        user,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    assert process.returncode == 0, err.decode()
    tasks = dict(line.split(" task_id=") for line in out.decode().splitlines() if " task_id=" in line)
    assert set(tasks) == {"blob_inserted", "flush_requested"}, out.decode()
    return tasks


async def task_status(api: Api, task_id: str) -> str | None:
    """The task's status once it has ended, through the API."""
    _, body = await api.call("GET", f"/tasks/{task_id}")
    status = body["data"]["status"] if body["errno"] == 0 else None
    return status if status in ("completed", "failed") else None


async def all_completed(api: Api, tasks: dict[str, str]) -> None:
    for kind, task_id in tasks.items():
        assert await eventually(lambda t=task_id: task_status(api, t), what=f"the {kind} task") == "completed"


def conforms(record: dict[str, Any], schema: dict[str, Any]) -> None:
    """``record`` is one the schema describes (jsonschema is not installed here): a kind it maps,
    every field its kind requires, no field its kind does not define (the owner would ignore it),
    and it parses as that kind."""
    ref = schema["discriminator"]["mapping"][record["kind"]]
    definition = schema["$defs"][ref.rsplit("/", 1)[1]]
    assert set(definition["required"]) <= set(record), record
    assert set(record) <= set(definition["properties"]), record
    assert COMMANDS.decode(json.dumps(record).encode()).kind == record["kind"]


async def test_the_example_producer_s_conversation_becomes_a_profile(api: Api, stack: Stack) -> None:
    user = new_user()
    tasks = await produce(stack, "default", user)
    await all_completed(api, tasks)
    slots = {
        p["attributes"]["sub_topic"]: p["content"] for p in (await api.ok("GET", f"/users/profile/{user}"))["profiles"]
    }
    assert {"name": "Alice", "city": "Paris"}.items() <= slots.items(), slots
    blobs = (await api.ok("GET", f"/users/blobs/{user}/chat"))["ids"]
    assert len(blobs) == 1

    settings = stack.settings
    key = f"default:{user}".encode()
    partition = partition_of(key, settings.topic_partitions)  # the default partitioner put them there
    sent = [m for m in await messages_in(settings, [TopicPartition(settings.topic_ingest, partition)]) if m.key == key]
    assert [json.loads(m.value)["task_id"] for m in sent] == list(tasks.values())
    schema = json.loads((ROOT / SCHEMA_DIR / INGEST_FILE).read_text())
    for message in sent:
        conforms(json.loads(message.value), schema)


async def test_a_project_that_does_not_exist_is_dead_lettered_and_its_tasks_fail(
    api: Api, stack: Stack, store: Store
) -> None:
    user = new_user()
    tasks = await produce(stack, "no_such_project", user)
    key = f"no_such_project:{user}".encode()

    async def parked() -> list[str] | None:
        errors = [dict(m.headers)["error"].decode() for m in await parked_messages(stack.settings) if m.key == key]
        return errors if len(errors) == len(tasks) else None

    errors = await eventually(parked, what="both records in the dead letters")
    assert errors == ["project 'no_such_project' does not exist"] * len(tasks)

    async def failed(task_id: str) -> dict[str, Any] | None:
        task = await get_task(store, "no_such_project", task_id)
        return task if task and task["status"] == "failed" else None

    for task_id in tasks.values():
        task = await eventually(lambda t=task_id: failed(t), what="the task failed")
        assert task["error"] == "project 'no_such_project' does not exist"
    await all_completed(api, await produce(stack, "default", new_user()))  # and nothing else stopped


async def test_a_record_keyed_other_than_its_user_is_refused(api: Api, stack: Stack) -> None:
    user = new_user()
    record = new_blob("default", user, BlobType.chat, {"messages": [{"role": "user", "content": "Hi, I am Zoe."}]})
    await publish_raw(stack.settings, stack.settings.topic_ingest, user, encode(record))  # the user id alone

    async def parked() -> str | None:
        found = [
            m for m in await parked_messages(stack.settings) if json.loads(m.value)["record_id"] == record.record_id
        ]
        return dict(found[0].headers)["error"].decode() if found else None

    reason = await eventually(parked, what="the record in the dead letters")
    assert reason == f"its key {user.encode()!r} is not its user's {record.key!r} (project_id:user_id)"
    assert await eventually(lambda: task_status(api, record.task_id), what="its task") == "failed"
