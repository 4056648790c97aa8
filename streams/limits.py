"""Every size the pipeline bounds, in one place, so no input the API accepts can make a record
(a derived one included) larger than the broker takes.

    blob         ≤ blob_bytes (encoded), ≤ blob_messages           refused by the API past that (413/422)
    window       closes at buffer_tokens, buffer_bytes or buffer_messages, before it would pass the
                 bytes or messages bound: a BufferFlushed is ≤ buffer_bytes + a few hundred bytes
    extraction   ≤ changes_per_flush slot changes of ≤ slot_chars each, a tip of ≤ event_tip_chars,
                 ≤ gists_per_event gists: longer answers are cut, visibly (a log line)
    any record   ≤ record_bytes once encoded; the owner refuses (dead-letters) a step that would
                 write a larger one rather than let the broker refuse it
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    blob_bytes: int = 262_144
    blob_messages: int = 500
    buffer_tokens: int = 1024
    buffer_bytes: int = 262_144
    buffer_messages: int = 500
    slot_chars: int = 2000
    changes_per_flush: int = 32
    event_tip_chars: int = 8000
    gists_per_event: int = 16
    record_bytes: int = 900_000  # under Kafka's default message.max.bytes (1 MiB)


def cut(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters, an ellipsis marking the cut."""
    return text if len(text) <= chars else text[: chars - 1] + "…"
