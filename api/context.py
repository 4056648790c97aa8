"""The context string an app puts into its prompt: profile, events, and working memory.

Budget (``max_tokens``, counted with ``streams.tokens.count_tokens`` on the final string)::

    ┌ template (framing, titles) ─ paid first; a template larger than the budget gives "" ┐
    │ profile   ≤ room × profile_ratio           best slots first, whole lines             │
    │ rest      = room − profile share           (− what the profile used, when            │
    │                                             fill_window_with_events)                 │
    │   working memory ≤ rest / 2 (all of rest when there are no events), newest kept      │
    │   events         the rest, best first; what they leave goes back to working memory   │
    └──────────────────────────────────────────────────────────────────────────────────────┘

Working memory is the user's latest messages that extraction has not turned into profile or
events yet (Memobase drops them from its context); it is titled as such so the model knows
it may repeat or contradict what is above. A custom template has ``{profile_section}`` and
``{event_section}`` (as in Memobase) and may place ``{working_memory_section}``; without it,
working memory closes the event section. Tokens of joined text are not always the sum of
their parts, so the result is recounted and trimmed (events, then working memory, then
profile) until it fits.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from api.token_budget import COSTED_LINE_CHARS, COSTS_KEPT, fit, line_cost
from streams.tokens import count_tokens, truncate_to_tokens

PROFILE = "{profile_section}"
EVENTS = "{event_section}"
WORKING = "{working_memory_section}"
DEFAULT_TEMPLATE = (
    "<memory>\n"
    f"## What we know about the user\n{PROFILE}\n\n"
    f"## Past events\n{EVENTS}\n"
    "</memory>\n"
    "Use what is inside <memory> when it helps to answer; do not mention it otherwise."
)
WORKING_TITLE = "## Latest messages, not yet processed into memory (may repeat or contradict the above)"
MESSAGE_TOKENS = 200  # longest message shown in working memory; longer ones are cut


@dataclass(frozen=True)
class ContextParts:
    profiles: list[str]  # lines, best first
    events: list[str]  # lines, best first
    working: list[str]  # lines, oldest first (the newest are kept when short of room)


@dataclass(frozen=True)
class Budget:
    max_tokens: int
    profile_ratio: float = 0.6
    fill_window_with_events: bool = False


def event_line(event: Mapping[str, Any], require_summary: bool = False) -> str | None:
    """An event as ``- [date] tip``; without a tip, the profile changes it made (unless a summary is required)."""
    data = event.get("event_data") or {}
    text = data.get("event_tip")
    if not text and not require_summary:
        deltas = data.get("profile_delta") or []
        text = "; ".join(
            f"{d['attributes'].get('topic')}::{d['attributes'].get('sub_topic')}: {d['content']}" for d in deltas
        )
    return f"- [{event['created_at']:%Y-%m-%d %H:%M}] {text}" if text else None


@lru_cache(maxsize=COSTS_KEPT)
def _shortened(content: str) -> str:
    return truncate_to_tokens(content, MESSAGE_TOKENS)


def message_line(message: Mapping[str, Any], blob_created_at: datetime) -> str:
    who = message["role"] + (f" ({message['alias']})" if message.get("alias") else "")
    content = " ".join(message["content"].split())
    if len(content) <= MESSAGE_TOKENS:  # fewer characters than the limit: fewer tokens too
        short = content
    elif len(content) <= COSTED_LINE_CHARS:
        short = _shortened(content)
    else:
        short = truncate_to_tokens(content, MESSAGE_TOKENS)
    at = message.get("created_at") or f"{blob_created_at:%Y-%m-%d %H:%M}"
    return f"- [{at}] {who}: {short}{'…' if short != content else ''}"


def check_template(template: str) -> str | None:
    """What is wrong with a custom template, or None when it is usable."""
    if PROFILE not in template and EVENTS not in template:
        return f"must contain {PROFILE} or {EVENTS}"
    return None


def _render(template: str, profiles: list[str], events: list[str], working: list[str]) -> str:
    block = f"{WORKING_TITLE}\n" + "\n".join(working) if working else ""
    event_section = "\n".join(events)
    if WORKING not in template and block:
        event_section = f"{event_section}\n\n{block}" if event_section else block
    return template.replace(PROFILE, "\n".join(profiles)).replace(EVENTS, event_section).replace(WORKING, block)


def _fit_working(lines: list[str], room: int) -> tuple[list[str], int]:
    """The newest working-memory lines that fit in ``room`` with their title, oldest first."""
    if not lines:
        return [], 0
    title = line_cost(WORKING_TITLE) + 1  # the title, and the blank line before it
    newest, used = fit(reversed(lines), room - title)
    return (newest[::-1], used + title) if newest else ([], 0)


@lru_cache(maxsize=64)
def _framing(template: str) -> int:
    """The tokens of a template with nothing in it (the default one, mostly)."""
    return count_tokens(_render(template, [], [], []))


def build_context(parts: ContextParts, budget: Budget, template: str = DEFAULT_TEMPLATE) -> str:
    """The context, never more than ``budget.max_tokens`` tokens ("" when even the framing does not fit)."""
    room = budget.max_tokens - _framing(template)
    if room < 0:
        return ""
    profile_share = int(room * budget.profile_ratio)
    profiles, profile_used = fit(parts.profiles, profile_share)
    rest = room - (profile_used if budget.fill_window_with_events else profile_share)
    working, working_used = _fit_working(parts.working, rest if not parts.events else rest // 2)
    events, events_used = fit(parts.events, rest - working_used)
    if len(events) == len(parts.events):
        working, _ = _fit_working(parts.working, rest - events_used)
    context = _render(template, profiles, events, working)
    while count_tokens(context) > budget.max_tokens:
        if events:
            events.pop()
        elif working:
            working.pop(0)
        elif profiles:
            profiles.pop()
        else:
            return ""
        context = _render(template, profiles, events, working)
    return context
