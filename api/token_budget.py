"""Packing whole lines into a token budget (cl100k, the tokenizer the buffers count with)."""

from collections.abc import Iterable
from functools import lru_cache

from streams.tokens import count_tokens

# Lines a context is made of repeat from read to read (a user's slots and events), so their
# costs are remembered: at most COSTS_KEPT lines of at most COSTED_LINE_CHARS characters each
# (a few MB at most); longer lines are counted each time.
COSTS_KEPT = 16_384
COSTED_LINE_CHARS = 1_000


@lru_cache(maxsize=COSTS_KEPT)
def _remembered_cost(line: str) -> int:
    return count_tokens(line + "\n")


def line_cost(line: str) -> int:
    return _remembered_cost(line) if len(line) <= COSTED_LINE_CHARS else count_tokens(line + "\n")


def fit(lines: Iterable[str], budget: int) -> tuple[list[str], int]:
    """The leading ``lines`` that fit in ``budget`` tokens, and the tokens they use.

    Stops at the first line that does not fit, so a ranked list keeps its order: a lower-ranked
    short line never jumps over a higher-ranked long one.
    """
    taken: list[str] = []
    used = 0
    for line in lines:
        cost = line_cost(line)
        if used + cost > budget:
            break
        taken.append(line)
        used += cost
    return taken, used
