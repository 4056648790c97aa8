"""Replaying parked flushes (``memstream replay-dead-letters``).

The extract agent parks a flush whose extraction failed for good on the dead-letter topic,
unchanged, with an ``error`` header, and ends its tasks ``failed``. Once the LLM answers again,
this sends each parked ``BufferFlushed`` back to the flushes topic, keyed by its user as before,
and the extract agent processes it like any flush: every id it emits is derived from the flush
id, so the same tasks end ``completed`` (their ``completed`` row is newer than the ``failed``
one, and ``GET /tasks`` reports the newest status) and the profile takes the changes once.

Each dead letter is handled once. The topic is read as the consumer group
``<MEMSTREAM_APP_ID>.dead-letter-replay``, from its committed offsets up to the end offsets
taken at the start (a flush that fails again is parked anew, after them, for a later run), and a
partition's offsets are committed after the broker has acknowledged its re-sends. A crash in
between re-sends those flushes on the next run: their ids are the same, so the rows are too,
but the LLM is asked again. Run one at a time: two runs at once would both re-send what neither
has committed yet.

Left on the topic, reported and committed past (so reported once):

- records that do not decode;
- records that are not flushes, parked by ``dead_letter_on_error`` or an event edit whose
  embedding failed: an edit is a whole rewrite computed when it was made, so sending it now
  could undo later edits, and an ingest command belongs to another topic and agent;
- flushes of a user deleted since: extracting them would bring the deleted user's profile back.
  This is read from the users read model, so do not run it while an in-place rebuild has
  emptied the tables (every flush would look orphaned); replayed flushes need running workers
  anyway.
"""

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from memstream.settings import Settings
from projections.store import Store
from projections.users import get_user
from streams.events import BufferFlushed, decode


@dataclass(frozen=True)
class DeadLetter:
    position: str  # topic:partition:offset
    kind: str  # the record's kind, or "undecodable"
    error: str  # its ``error`` header
    flush_id: str | None = None
    not_replayed: str = ""  # why it was only reported; empty when it was re-sent


@dataclass
class DeadLetterReplay:
    replayed: list[DeadLetter] = field(default_factory=list)
    reported: list[DeadLetter] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"replayed {len(self.replayed)} parked flush(es); {len(self.reported)} dead letter(s) only reported"]
        lines += [f"  replayed {d.position} flush {d.flush_id} (failed with: {d.error})" for d in self.replayed]
        lines += [f"  left {d.position} {d.kind}: {d.not_replayed} (failed with: {d.error})" for d in self.reported]
        return "\n".join(lines)


def replay_group(settings: Settings) -> str:
    return f"{settings.app_id}.dead-letter-replay"


async def _examine(store: Store, message: ConsumerRecord) -> DeadLetter:
    """What ``message`` is, and why it must not be re-sent (``not_replayed``) if so."""
    where = f"{message.topic}:{message.partition}:{message.offset}"
    error = dict(message.headers or ()).get("error", b"").decode(errors="replace")
    try:
        record = decode(message.value)
    except ValidationError:
        return DeadLetter(where, "undecodable", error, not_replayed="cannot be decoded")
    if not isinstance(record, BufferFlushed):
        return DeadLetter(where, record.kind, error, not_replayed="not a flush")
    if await get_user(store, record.project_id, record.user_id) is None:
        return DeadLetter(where, record.kind, error, record.flush_id, not_replayed=f"user {record.user_id} is deleted")
    return DeadLetter(where, record.kind, error, record.flush_id)


async def replay_dead_letters(settings: Settings, store: Store) -> DeadLetterReplay:
    """Re-send the parked flushes not handled by an earlier run to the flushes topic; report the rest."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=replay_group(settings),
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    outcome = DeadLetterReplay()
    try:
        await consumer.topics()  # loads the topic's metadata
        partitions = consumer.partitions_for_topic(settings.topic_dead_letter) or set()
        tps = [TopicPartition(settings.topic_dead_letter, p) for p in sorted(partitions)]
        consumer.assign(tps)  # the starting positions are the group's committed offsets
        ends = await consumer.end_offsets(tps)
        pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, messages in batches.items():
                handled = [m for m in messages if m.offset < ends[tp]]
                for message in handled:
                    letter = await _examine(store, message)
                    if letter.not_replayed:
                        outcome.reported.append(letter)
                        continue
                    headers = [("replayed-from", letter.position.encode())]
                    await producer.send_and_wait(settings.topic_flushes, message.value, key=message.key, headers=headers)
                    outcome.replayed.append(letter)
                if handled:
                    await consumer.commit({tp: handled[-1].offset + 1})
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    finally:
        await producer.stop()
        await consumer.stop()
    return outcome
