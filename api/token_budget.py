"""Packing whole lines into a token budget (cl100k, the tokenizer the buffers count with)."""

from collections.abc import Iterable

from streams.tokens import count_tokens


def line_cost(line: str) -> int:
    return count_tokens(line + "\n")


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
