"""Knowing which records the extract agent has applied already, so one read again is skipped.

Faust acks an event when its agent asks for the next one and commits acked offsets now and
then, so a worker that stops or crashes, or a rebalance, makes it read again the records after
the last commit (and from the start when nothing was committed yet). Extracting a flush again
would ask the LLM again against a profile the flush already changed (its adds become updates).
So each profile in the extract agent's table carries marks of the last records applied to it,
written in the same changelog record as the slots they produced: a record found there is
skipped.

A mark is the record's id, and for a flush also its tasks: the buffer agent is at least once,
and after reading its input again it can emit a flush under the same id (the id derives from
its trigger) with other blobs — that one must be extracted. Marks, not offsets: a broker that
loses the tail of a partition it had acknowledged (the local one can, when stopped) hands those
offsets to new records. Only the last ``KEPT`` marks of a user are kept: a record is read again
soon after it was applied, or not at all. Marks are 16 hex digits (64 bits), plenty among ``KEPT``.
"""

from streams.events import BufferFlushed, Record, derived_id

KEPT = 16


def mark(record: Record) -> str:
    tasks = record.task_ids if isinstance(record, BufferFlushed) else []
    return derived_id(record.event_id, *tasks).replace("-", "")[:16]


def was_applied(applied: tuple[str, ...], record: Record) -> bool:
    return mark(record) in applied


def with_applied(applied: tuple[str, ...], record: Record) -> tuple[str, ...]:
    """``applied`` with ``record`` added, the oldest dropped past ``KEPT``."""
    return (*applied, mark(record))[-KEPT:]
