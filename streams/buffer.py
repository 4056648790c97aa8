"""Buffer windows: a user's chat blobs gathered until they are worth one extraction.

    blobs ─ b1 ─ b2 ─ b3 ─┐ closes at buffer_tokens, buffer_bytes or buffer_messages ─▶ BufferFlushed(size)
                          ├ idle for buffer_flush_interval (the owner's timer)       ─▶ BufferFlushed(idle)
                          └ FlushRequested                                           ─▶ BufferFlushed(request)

A blob that would take a window past its bytes or messages closes the window first and opens
the next, so a closed window never holds more than ``buffer_bytes`` of blobs: however many
empty messages or however long a message a client sends (within the blob limits), the
BufferFlushed stays under the broker's record size. Pure functions; ``streams.owner`` keeps the
window in the user's memory.
"""

from datetime import datetime

from pydantic import ValidationError

from streams.limits import Limits
from streams.records import (
    BlobInserted,
    BlobType,
    BufferedBlob,
    BufferFlushed,
    ChatMessage,
    Content,
    FlushReason,
    derived_id,
)
from streams.tokens import count_tokens


class Window(Content):
    """The open window of one user: its blobs in order, and what they weigh."""

    blob_type: BlobType
    blobs: tuple[BufferedBlob, ...] = ()
    tokens: int = 0
    bytes: int = 0
    messages: int = 0
    last_at: datetime


def blob_bytes(blob: BufferedBlob) -> int:
    return len(blob.model_dump_json().encode())


def chat_blob(record: BlobInserted, limits: Limits) -> BufferedBlob:
    """The buffered form of a chat blob; ValueError naming the limit when it is not one a window takes."""
    messages = record.blob_data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("blob_data.messages: a chat blob needs a non-empty list of messages")
    if len(messages) > limits.blob_messages:
        raise ValueError(
            f"blob_data.messages: {len(messages)} messages, at most {limits.blob_messages} per blob "
            "(MEMSTREAM_MAX_BLOB_MESSAGES)"
        )
    try:
        parsed = [ChatMessage.model_validate(m) for m in messages]
    except ValidationError as exc:
        raise ValueError(f"blob_data.messages: {str(exc).splitlines()[0]}") from None
    blob = BufferedBlob(blob_id=record.blob_id, task_id=record.task_id, created_at=record.created_at, messages=parsed)
    if (size := blob_bytes(blob)) > limits.blob_bytes:
        raise ValueError(
            f"blob_data: {size} bytes once stored, at most {limits.blob_bytes} per blob (MEMSTREAM_MAX_BLOB_BYTES)"
        )
    return blob


def _weigh(window: Window, blob: BufferedBlob) -> Window:
    return window.model_copy(
        update={
            "blobs": (*window.blobs, blob),
            "tokens": window.tokens + sum(count_tokens(m.content) for m in blob.messages),
            "bytes": window.bytes + blob_bytes(blob),
            "messages": window.messages + len(blob.messages),
        }
    )


def _full(window: Window, limits: Limits) -> bool:
    return (
        window.tokens >= limits.buffer_tokens
        or window.bytes >= limits.buffer_bytes
        or window.messages >= limits.buffer_messages
    )


def add(window: Window | None, blob: BufferedBlob, at: datetime, limits: Limits) -> tuple[Window | None, list[Window]]:
    """The window after ``blob`` joins it, and the windows this closed by size (oldest first):
    the open one when ``blob`` would take it past a bound, then the new one if ``blob`` fills it."""
    closed: list[Window] = []
    if (
        window is not None
        and window.blobs
        and (
            window.bytes + blob_bytes(blob) > limits.buffer_bytes
            or window.messages + len(blob.messages) > limits.buffer_messages
        )
    ):
        closed.append(window)
        window = None
    grown = _weigh(window or Window(blob_type=BlobType.chat, last_at=at), blob).model_copy(update={"last_at": at})
    if _full(grown, limits):
        return None, [*closed, grown]
    return grown, closed


def without(window: Window, blob_id: str) -> Window | None:
    """``window`` without the blob ``blob_id`` (None when nothing is left)."""
    kept = [b for b in window.blobs if b.blob_id != blob_id]
    if not kept:
        return None
    empty = Window(blob_type=window.blob_type, last_at=window.last_at)
    for blob in kept:
        empty = _weigh(empty, blob)
    return empty


def flush_id_for(window: Window, reason: FlushReason) -> str:
    """A closed window's id, from the blob that closed it (a request names its own)."""
    return derived_id(reason, window.blobs[-1].task_id)


def close(
    window: Window, project_id: str, user_id: str, flush_id: str, reason: FlushReason, extra_tasks: tuple[str, ...] = ()
) -> BufferFlushed:
    return BufferFlushed(
        project_id=project_id,
        user_id=user_id,
        record_id=derived_id(flush_id, "flushed"),
        flush_id=flush_id,
        blob_type=window.blob_type,
        reason=reason,
        blobs=list(window.blobs),
        task_ids=[b.task_id for b in window.blobs] + list(extra_tasks),
    )
