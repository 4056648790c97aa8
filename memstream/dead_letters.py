"""Replaying parked flushes (``memstream replay-dead-letters``).

The owner parks a flush whose extraction failed for good on the dead-letter topic, with an
``error`` header, and ends its tasks ``failed``. Once the LLM answers again, this sends each
parked ``BufferFlushed`` back to the ingest topic as a ``FlushReplayed`` command, keyed by its user
as before; the owner queues it like a closed window, so it is extracted in the user's order. Its
ids are the flush's, so the same tasks end ``completed`` (a later fact than the ``failed`` one)
and the profile takes the changes once. The owner refuses the replay of a user forgotten since
(extracting it would bring them back): those end in the dead letters again, with that reason.

Each dead letter is handled once. The topic is read as the consumer group
``<MEMSTREAM_APP_ID>.dead-letter-replay``, from its committed offsets up to the end offsets
taken at the start (a flush that fails again is parked anew, after them, for a later run), and a
partition's offsets are committed after the broker has acknowledged its re-sends. A crash in
between re-sends those flushes on the next run: the owner queues them again and the LLM is asked
again. Run one at a time.

Left on the topic, reported and committed past (so reported once): records that are not parked
flushes — commands the owner refused, records the projection writer could not use — which a
person reads with their reason; sending them again would fail the same way.
"""

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from memstream.settings import Settings
from streams.records import FLUSHES, FlushReplayed, Undecodable, encode


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


def _examine(message: ConsumerRecord) -> tuple[DeadLetter, FlushReplayed | None]:
    """What ``message`` is, and the command that replays it (None when it is not a parked flush)."""
    where = f"{message.topic}:{message.partition}:{message.offset}"
    error = dict(message.headers or ()).get("error", b"").decode(errors="replace")
    try:
        flush = FLUSHES.decode(message.value)
    except Undecodable:
        return DeadLetter(where, "other", error, not_replayed="not a parked flush"), None
    replay = FlushReplayed(project_id=flush.project_id, user_id=flush.user_id, flush=flush)
    return DeadLetter(where, flush.kind, error, flush.flush_id), replay


async def replay_dead_letters(settings: Settings) -> DeadLetterReplay:
    """Send the parked flushes not handled by an earlier run back to the owner; report the rest."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=replay_group(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
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
                    letter, replay = _examine(message)
                    if replay is None:
                        outcome.reported.append(letter)
                        continue
                    headers = [("replayed-from", letter.position.encode())]
                    await producer.send_and_wait(settings.topic_ingest, encode(replay), key=replay.key, headers=headers)
                    outcome.replayed.append(letter)
                if handled:
                    await consumer.commit({tp: handled[-1].offset + 1})
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    finally:
        await producer.stop()
        await consumer.stop()
    return outcome
