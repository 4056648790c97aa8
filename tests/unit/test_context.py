"""Choosing profile slots and packing the context into its token budget (pure functions)."""

from datetime import UTC, datetime

import pytest

from api.context import (
    DEFAULT_TEMPLATE,
    WORKING_TITLE,
    Budget,
    ContextParts,
    build_context,
    check_template,
    event_line,
    message_line,
)
from api.profile_filters import ProfileFilter, profile_line, select_profiles, words
from api.token_budget import fit
from streams.tokens import count_tokens

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def slot(topic: str, sub_topic: str, content: str = "x") -> dict:
    return {"topic": topic, "sub_topic": sub_topic, "content": content}


# newest first, as list_profiles returns them
PROFILES = [
    slot("interest", "music", "jazz"),
    slot("work", "title", "pilot"),
    slot("interest", "food", "ramen"),
    slot("basic_info", "name", "Alice"),
    slot("interest", "sport", "tennis"),
    slot("work", "company", "Acme"),
]


def names(profiles: list[dict]) -> list[str]:
    return [f"{p['topic']}::{p['sub_topic']}" for p in profiles]


def test_no_filter_keeps_newest_first() -> None:
    assert select_profiles(PROFILES, ProfileFilter()) == PROFILES


def test_only_topics_filters_case_insensitively() -> None:
    assert names(select_profiles(PROFILES, ProfileFilter(only_topics=("Work",)))) == ["work::title", "work::company"]


def test_prefer_topics_come_first_in_the_order_given() -> None:
    chosen = select_profiles(PROFILES, ProfileFilter(prefer_topics=("basic_info", "work")))
    assert names(chosen) == [
        "basic_info::name",
        "work::title",
        "work::company",
        "interest::music",
        "interest::food",
        "interest::sport",
    ]


def test_max_subtopic_size_and_topic_limits() -> None:
    capped = select_profiles(PROFILES, ProfileFilter(max_subtopic_size=1))
    assert names(capped) == ["interest::music", "work::title", "basic_info::name"]
    limited = select_profiles(PROFILES, ProfileFilter(max_subtopic_size=1, topic_limits={"interest": 2, "work": 0}))
    assert names(limited) == ["interest::music", "interest::food", "basic_info::name"]
    only_limits = select_profiles(PROFILES, ProfileFilter(topic_limits={"interest": 1}))
    assert names(only_limits) == ["interest::music", "work::title", "basic_info::name", "work::company"]


def test_topk_and_token_budget_keep_a_prefix() -> None:
    assert select_profiles(PROFILES, ProfileFilter(topk=2)) == PROFILES[:2]
    two_lines = sum(count_tokens(profile_line(p) + "\n") for p in PROFILES[:2])
    assert select_profiles(PROFILES, ProfileFilter(max_token_size=two_lines)) == PROFILES[:2]
    assert select_profiles(PROFILES, ProfileFilter(max_token_size=two_lines - 1)) == PROFILES[:1]


def test_chats_rank_the_slots_they_are_about_after_preferred_topics() -> None:
    chats = ("Where can I play tennis this weekend?", "Any good ramen places near the court?")
    assert names(select_profiles(PROFILES, ProfileFilter(chats=chats)))[:2] == ["interest::food", "interest::sport"]
    preferred = select_profiles(PROFILES, ProfileFilter(chats=chats, prefer_topics=("work",)))
    assert names(preferred)[:3] == ["work::title", "work::company", "interest::food"]


def test_words_skip_short_and_common_words() -> None:
    assert words("I really like the Jazz of Paris, ok?") == {"jazz", "paris"}


def test_fit_stops_at_the_first_line_that_does_not_fit() -> None:
    lines = ["short", "a much longer line than the others " * 5, "tiny"]
    taken, used = fit(lines, count_tokens("short\n") + 3)
    assert taken == ["short"] and used == count_tokens("short\n")


def test_event_line_uses_the_tip_or_the_profile_changes() -> None:
    tip = {"event_data": {"event_tip": "moved to Paris"}, "created_at": AT}
    assert event_line(tip) == "- [2026-05-01 12:00] moved to Paris"
    delta = {
        "event_data": {
            "profile_delta": [{"content": "Paris", "attributes": {"topic": "basic_info", "sub_topic": "city"}}]
        },
        "created_at": AT,
    }
    assert event_line(delta) == "- [2026-05-01 12:00] basic_info::city: Paris"
    assert event_line(delta, require_summary=True) is None
    assert event_line({"event_data": {}, "created_at": AT}) is None


def test_message_line_marks_the_speaker_and_cuts_long_messages() -> None:
    assert (
        message_line({"role": "user", "content": "hi\nthere", "alias": "Al"}, AT)
        == "- [2026-05-01 12:00] user (Al): hi there"
    )
    long = message_line({"role": "assistant", "content": "word " * 1000, "created_at": "yesterday"}, AT)
    assert long.startswith("- [yesterday] assistant: word") and long.endswith("…") and count_tokens(long) < 250


PARTS = ContextParts(
    profiles=[profile_line(slot("interest", f"s{i}", "likes long walks on the beach " * 3)) for i in range(40)],
    events=[f"- [2026-05-01 12:00] event number {i}" for i in range(40)],
    working=[f"- [2026-05-01 12:00] user: unflushed message {i}" for i in range(10)],
)
TEMPLATE = "Profile:\n{profile_section}\n---\nTimeline:\n{event_section}\n(end) {literal braces}"


@pytest.mark.parametrize("max_tokens", [1, 30, 60, 120, 400, 1000, 5000])
@pytest.mark.parametrize("template", [DEFAULT_TEMPLATE, TEMPLATE, "{working_memory_section}|{event_section}"])
@pytest.mark.parametrize("fill", [False, True])
def test_context_never_exceeds_its_budget(max_tokens: int, template: str, fill: bool) -> None:
    context = build_context(PARTS, Budget(max_tokens, 0.6, fill), template)
    assert count_tokens(context) <= max_tokens


def test_framing_that_does_not_fit_gives_an_empty_context() -> None:
    assert build_context(PARTS, Budget(5)) == ""


def test_default_context_keeps_profile_first_then_events_then_working_memory() -> None:
    parts = ContextParts(PARTS.profiles[:1], PARTS.events[:1], PARTS.working[:2])
    context = build_context(parts, Budget(5000))
    assert context.startswith("<memory>\n") and "</memory>" in context
    order = ["interest::s0", "event number 0", WORKING_TITLE, "unflushed message 0", "unflushed message 1"]
    assert [context.index(s) for s in order] == sorted(context.index(s) for s in order)


def test_working_memory_keeps_the_newest_messages_and_leaves_room_for_events() -> None:
    context = build_context(ContextParts([], PARTS.events, PARTS.working), Budget(200, profile_ratio=0.0))
    assert "unflushed message 9" in context and "unflushed message 0" not in context
    assert "event number 0" in context


def test_custom_template_is_filled_and_gets_working_memory_in_the_event_section() -> None:
    context = build_context(
        ContextParts(PARTS.profiles[:1], PARTS.events[:1], PARTS.working[:1]), Budget(5000), TEMPLATE
    )
    assert context.startswith("Profile:\n- interest::s0") and context.endswith("(end) {literal braces}")
    timeline = context.split("Timeline:\n")[1]
    assert timeline.index("event number 0") < timeline.index(WORKING_TITLE) < timeline.index("unflushed message 0")
    placed = build_context(
        ContextParts([], PARTS.events[:1], PARTS.working[:1]), Budget(5000), "{working_memory_section}|{event_section}"
    )
    assert placed.startswith(WORKING_TITLE) and placed.endswith("|- [2026-05-01 12:00] event number 0")


def test_profile_event_ratio_bounds_the_profile_share() -> None:
    def profile_tokens(ratio: float) -> int:
        context = build_context(ContextParts(PARTS.profiles, PARTS.events, []), Budget(1000, ratio), TEMPLATE)
        return count_tokens(context.split("---")[0])

    assert profile_tokens(0.2) < 0.2 * 1000 + 10 < profile_tokens(0.8) <= 0.8 * 1000 + 10
    assert profile_tokens(0.0) == count_tokens("Profile:\n\n")


def test_fill_window_gives_unused_profile_room_to_events() -> None:
    parts = ContextParts(PARTS.profiles[:1], PARTS.events, [])
    plain = build_context(parts, Budget(400, 0.6), TEMPLATE)
    filled = build_context(parts, Budget(400, 0.6, fill_window_with_events=True), TEMPLATE)
    assert filled.count("event number") > plain.count("event number")
    assert count_tokens(filled) <= 400


def test_check_template() -> None:
    assert check_template("just words") is not None
    assert check_template("{event_section}") is None and check_template("{profile_section}") is None
