"""Publish a short conversation for one user straight to Memstream's ingest topic, then ask for
it to be extracted: a plain aiokafka producer, no Memstream code (the contract is
docs/producers.md and docs/schema/ingest.json).

    python examples/produce_chats.py --bootstrap 127.0.0.1:9092 --project default --user <uuid>

It prints the id of each record's task; poll them at ``GET /api/v1/tasks/{task_id}`` with a token
of the project (``running``, then ``completed`` or ``failed`` with the reason).
"""

import argparse
import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

CONVERSATION = [
    {"role": "user", "content": "Hi, my name is Alice. I live in Paris and I like jazz."},
    {"role": "assistant", "content": "Nice to meet you, Alice! Any favourite jazz club in Paris?"},
]


def record(kind: str, project: str, user: str, **body: Any) -> dict[str, Any]:
    """An ingest record: the envelope every kind carries, then the kind's own fields."""
    return {
        "v": 2,
        "kind": kind,
        "record_id": str(uuid.uuid4()),  # keep it when re-sending the same record
        "occurred_at": datetime.now(UTC).isoformat(),
        "project_id": project,
        "user_id": user,
        **body,
    }


def conversation(project: str, user: str) -> list[dict[str, Any]]:
    """A chat blob with the conversation, then a flush request that has it extracted now."""
    blob = record(
        "blob_inserted",
        project,
        user,
        blob_id=str(uuid.uuid4()),
        task_id=str(uuid.uuid4()),
        blob_type="chat",
        blob_data={"messages": CONVERSATION},
        created_at=datetime.now(UTC).isoformat(),
    )
    flush = record("flush_requested", project, user, blob_type="chat", task_id=str(uuid.uuid4()))
    return [blob, flush]


async def publish(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    """Send ``records`` in order, keyed ``project:user``, each acknowledged by all in-sync replicas."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for rec in records:
            key = f"{rec['project_id']}:{rec['user_id']}".encode()
            await producer.send_and_wait(topic, json.dumps(rec).encode(), key=key)
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("MEMSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--topic", default=os.environ.get("MEMSTREAM_TOPIC_INGEST", "memstream.ingest"))
    parser.add_argument("--project", default=os.environ.get("MEMSTREAM_PROJECT", "default"))
    parser.add_argument("--user", default=os.environ.get("MEMSTREAM_USER"), help="a UUID (default: a new one)")
    args = parser.parse_args()
    user = str(uuid.UUID(args.user)) if args.user else str(uuid.uuid4())  # the API serves canonical UUIDs
    records = conversation(args.project, user)
    asyncio.run(publish(args.bootstrap, args.topic, records))
    print(f"published for user {user} of project {args.project}; poll GET /api/v1/tasks/{{task_id}}:")
    for rec in records:
        print(f"{rec['kind']} task_id={rec['task_id']}")


if __name__ == "__main__":
    main()
