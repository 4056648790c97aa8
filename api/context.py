"""The context string an app puts into its prompt: profile first, then recent events.

Both sections share ``max_token_size`` (counted with the same cl100k tokenizer the buffers
use); lines are added whole, in priority order, until the next one would not fit.
"""

from typing import Any

from streams.tokens import count_tokens

HEADER = "<memory>\n"
PROFILE_TITLE = "## What we know about the user\n"
EVENT_TITLE = "\n## Recent events\n"
FOOTER = "</memory>\nUse what is inside <memory> when it helps to answer; do not mention it otherwise."


def profile_lines(profiles: list[dict[str, Any]]) -> list[str]:
    return [f"- {p['topic']}::{p['sub_topic']}: {p['content']}\n" for p in profiles]


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    lines = []
    for event in events:
        tip = (event["event_data"] or {}).get("event_tip")
        if tip:
            lines.append(f"- [{event['created_at']:%Y-%m-%d %H:%M}] {tip}\n")
    return lines


def build_context(profiles: list[dict[str, Any]], events: list[dict[str, Any]], max_tokens: int) -> str:
    fixed = HEADER + PROFILE_TITLE + EVENT_TITLE + FOOTER
    budget = max_tokens - count_tokens(fixed)
    sections: list[list[str]] = []
    for lines in (profile_lines(profiles), event_lines(events)):
        taken = []
        for line in lines:
            cost = count_tokens(line)
            if cost > budget:
                break
            taken.append(line)
            budget -= cost
        sections.append(taken)
    if budget < 0:
        return ""
    return HEADER + PROFILE_TITLE + "".join(sections[0]) + EVENT_TITLE + "".join(sections[1]) + FOOTER
