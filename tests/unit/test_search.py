"""The pure parts of the events API: tag parameters, merging an edit, the token budget, an event's text."""

import pytest
from pydantic import ValidationError

from api.envelope import ApiError
from api.routes.events import EventPatch, merge, parse_tag_values, parse_tags, within_tokens
from projections.events import event_text
from streams.records import EventData, EventTag, ProfileDelta
from streams.tokens import count_tokens

STORED = EventData(
    event_tip="Ada moved to Rome",
    event_tags=[EventTag(tag="emotion", value="happy")],
    profile_delta=[ProfileDelta(content="Rome", attributes={"topic": "basic_info", "sub_topic": "city"})],
)


def test_tags_split_on_commas_ignoring_blanks() -> None:
    assert parse_tags(" emotion, topic,,") == ["emotion", "topic"]
    assert parse_tags("") == []


def test_tag_values_become_pairs() -> None:
    assert parse_tag_values("emotion=happy, topic = work") == ["emotion=happy", "topic=work"]
    assert parse_tag_values("formula=a=b") == ["formula=a=b"]  # the value runs to the end
    assert parse_tag_values("") == []


@pytest.mark.parametrize("raw", ["emotion", "emotion=", "=happy", "emotion=happy,topic"])
def test_malformed_tag_values_are_422(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_tag_values(raw)
    assert caught.value.http_status == 422 and caught.value.errmsg.startswith("tag_values:")


def test_merge_replaces_only_the_fields_given() -> None:
    merged = merge(STORED, EventPatch.model_validate({"event_tip": "Ada moved to Milan"}))
    assert merged == STORED.model_copy(update={"event_tip": "Ada moved to Milan"})
    retagged = merge(STORED, EventPatch.model_validate({"event_tags": [{"tag": "topic", "value": "travel"}]}))
    assert retagged.event_tags == [EventTag(tag="topic", value="travel")] and retagged.event_tip == STORED.event_tip


def test_merge_can_clear_fields() -> None:
    cleared = merge(STORED, EventPatch.model_validate({"event_tip": None, "event_tags": [], "profile_delta": []}))
    assert cleared == EventData(event_tip=None, event_tags=[], profile_delta=[])
    assert merge(STORED, EventPatch()) == STORED


def test_patch_ignores_unknown_fields_and_takes_what_the_sdk_allows() -> None:
    patch = EventPatch.model_validate({"colour": "red", "profile_delta": [{"content": "x", "attributes": None}]})
    assert merge(STORED, patch).profile_delta[0].attributes == {}
    assert merge(STORED, EventPatch.model_validate({"profile_delta": None})).profile_delta == []
    with pytest.raises(ValidationError, match="profile_delta"):
        EventPatch.model_validate({"profile_delta": [{"attributes": {}}]})


def test_event_text_is_tip_then_profile_changes() -> None:
    assert event_text(STORED.model_dump()) == "Ada moved to Rome\nRome"
    assert event_text({"event_tip": None, "profile_delta": []}) == ""


def test_token_budget_keeps_leading_events_that_fit() -> None:
    events = [{"event_data": {"event_tip": tip, "profile_delta": []}} for tip in ("one two three", "four five", "six")]
    sizes = [count_tokens(e["event_data"]["event_tip"]) for e in events]
    assert within_tokens(events, sum(sizes)) == events
    assert within_tokens(events, sizes[0] + sizes[1]) == events[:2]
    assert within_tokens(events, sizes[0] - 1) == []
