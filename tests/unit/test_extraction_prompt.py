"""The extraction prompt and answer schema rendered from a project config, and the LLM
extractor's re-ask and usage accounting against the scripted endpoint (no broker)."""

import pytest

from scripts.scripted_llm import ScriptedLLM
from streams.extraction import ExtractionFailed
from streams.llm import LLMExtractor
from streams.profile import Slot
from streams.project_config import DEFAULT, parse
from streams.prompts import extract as prompt
from streams.records import ChatMessage

CONFIG = parse("""
language: French
profile_strict_mode: true
profile_validate_mode: false
event_theme_requirement: the user's travel plans
overwrite_user_profiles:
  - topic: travel
    description: where the user goes
    sub_topics:
      - name: destinations
        description: cities the user plans to visit
        update_description: append new cities, keep the old ones
        validate_value: true
      - seat
event_tags:
  - name: mood
    description: how the user feels
  - name: budget
""")


def test_system_prompt_carries_the_config() -> None:
    system = prompt.system_prompt(CONFIG)
    assert "- travel: where the user goes" in system
    assert (
        "  - destinations: cities the user plans to visit (merge rule: append new cities, keep the old ones) [check]"
        in system
    )
    assert "  - seat\n" in system  # not validated, like the project: no mark
    assert "basic_info" not in system  # overwrite replaces the default topics
    assert prompt.STRICT in system and prompt.VALIDATE_MARKED in system and prompt.VALIDATE_ALL not in system
    assert "focused on: the user's travel plans" in system
    assert "- mood: how the user feels\n- budget" in system
    assert "in French" in system
    assert '"event_tags": [{"tag": "mood"' in system


def test_default_config_prompt_uses_default_topics_and_no_tags() -> None:
    system = prompt.system_prompt(DEFAULT)
    assert "- basic_info\n  - name\n" in system and "[check]" not in system and "[no check]" not in system
    assert prompt.OPEN in system and prompt.VALIDATE_ALL in system and prompt.LANGUAGE_OF_USER in system
    assert "event_tags" not in system
    assert "event_tags" not in prompt.answer_schema(DEFAULT)["properties"]


def test_answer_schema_names_the_configured_tags() -> None:
    schema = prompt.answer_schema(CONFIG)
    assert schema["required"] == ["changes", "event_tip", "event_tags"]
    assert schema["properties"]["event_tags"]["items"]["properties"]["tag"]["enum"] == ["mood", "budget"]


def test_user_message_shows_profile_keys_and_timed_aliased_chats() -> None:
    at = "2026-01-01T00:00:00+00:00"
    slot = Slot(profile_id="x", topic="travel", sub_topic="seat", content="aisle", created_at=at, updated_at=at)
    chats = [ChatMessage(role="user", content="Off to Rome", alias="Ann", created_at=at)]
    user = prompt.messages(chats, {"travel::seat": slot}, CONFIG)[1]["content"]
    assert "travel::seat = aisle" in user and f"[{at}] Ann (user): Off to Rome" in user


@pytest.fixture
async def llm() -> ScriptedLLM:
    server = ScriptedLLM()
    await server.start()
    yield server
    await server.stop()


async def test_reask_shows_the_bad_answer_and_usage_sums_both_calls(llm: ScriptedLLM) -> None:
    extractor = LLMExtractor(llm.base_url, "k", "small-model", 5.0)
    llm.script("not json", {"changes": [], "event_tip": "a trip", "event_tags": [{"tag": "mood", "value": "glad"}]})
    extraction = await extractor.extract([ChatMessage(role="user", content="hi")], {}, CONFIG)
    assert extraction.event_tags[0].value == "glad"
    assert extraction.usage.model_dump() == {
        "model": "small-model",
        "calls": 2,
        "input_tokens": 20,
        "output_tokens": 10,
    }
    first, second = llm.requests
    assert first["response_format"]["json_schema"]["schema"] == prompt.answer_schema(CONFIG)
    assert second["messages"][-2] == {"role": "assistant", "content": "not json"}
    assert "could not be used: malformed LLM answer" in second["messages"][-1]["content"]


async def test_failure_after_a_reask_carries_the_usage_spent(llm: ScriptedLLM) -> None:
    extractor = LLMExtractor(llm.base_url, "k", "small-model", 5.0)
    llm.script("not json", 500)
    with pytest.raises(ExtractionFailed, match="LLM call failed") as failed:
        await extractor.extract([ChatMessage(role="user", content="hi")], {}, DEFAULT)
    assert (failed.value.usage.calls, failed.value.usage.input_tokens) == (1, 10)


def test_validate_mode_exemptions_are_marked() -> None:
    config = parse(
        "overwrite_user_profiles:\n  - topic: t\n    sub_topics:\n      - name: free\n        validate_value: false\n"
    )
    system = prompt.system_prompt(config)
    assert "  - free [no check]" in system and prompt.VALIDATE_ALL + prompt.VALIDATE_EXEMPT in system
