"""GET /users/context on the real stack: budget, working memory, template, ratio, chats search, filters."""

import asyncio
import json

import pytest
from memobase import MemoBaseClient

from api.context import WORKING_TITLE
from memstream.stack import Stack
from scripts.scripted_llm import ScriptedLLM
from streams.tokens import count_tokens
from tests.support.client import Api, chat, eventually, new_user
from tests.support.memory import change, flush_with, rejected, seeded
from tests.support.stack import TOKEN

pytestmark = pytest.mark.stack_settings.with_args(
    lambda llm: {"llm_base_url": llm.base_url, "embedding_base_url": llm.base_url}
)

TIPS = [
    "Adopted a cat named Miso from the shelter",
    "Went skiing in the Alps with friends",
    "Started learning the Rust language",
]
UNFLUSHED = "Tomorrow I fly to Lisbon for a conference on glaciers"


@pytest.fixture(scope="module")
async def user(api: Api, llm: ScriptedLLM) -> str:
    """Three flushed events (newest last in TIPS), a broad profile, and one chat still in the buffer."""
    user = new_user()
    slots = [change("interest", f"hobby_{i}", f"collects vintage item number {i} with great care") for i in range(12)]
    slots += [change("work", "title", "airline pilot"), change("basic_info", "name", "Alice")]
    await seeded(api, llm, user, slots, TIPS[0])
    for tip in TIPS[1:]:
        await flush_with(api, llm, user, [], tip)
    await api.ok("POST", f"/blobs/insert/{user}", json=chat(UNFLUSHED))
    return user


async def context(api: Api, user: str, **params: object) -> str:
    query = {k: str(v) for k, v in params.items()}
    return (await api.ok("GET", f"/users/context/{user}", params=query or None))["context"]


async def with_working_memory(api: Api, user: str, **params: object) -> str:
    async def shown() -> str | None:
        text = await context(api, user, **params)
        return text if UNFLUSHED in text else None

    return await eventually(shown, what="unflushed chat in the context")


async def test_unflushed_chat_is_working_memory_marked_as_unprocessed(api: Api, user: str) -> None:
    text = await with_working_memory(api, user, max_token_size=2000)
    assert text.index("airline pilot") < text.index(TIPS[-1]) < text.index(WORKING_TITLE) < text.index(UNFLUSHED)
    assert f"user: {UNFLUSHED}" in text


async def test_working_memory_leaves_once_flushed(api: Api, llm: ScriptedLLM) -> None:
    user = new_user()
    await api.ok("POST", f"/blobs/insert/{user}", json=chat(UNFLUSHED))
    await with_working_memory(api, user)
    await flush_with(api, llm, user, [change("travel", "next_trip", "Lisbon")], "Planned a trip to Lisbon", said="ok")
    text = await context(api, user)
    assert "travel::next_trip: Lisbon" in text and WORKING_TITLE not in text


@pytest.mark.parametrize("template", [None, "P:{profile_section}|E:{event_section}|W:{working_memory_section}"])
async def test_context_never_exceeds_max_token_size(api: Api, user: str, template: str | None) -> None:
    await with_working_memory(api, user)
    extra = {"customize_context_prompt": template} if template else {}
    for size in (20, 60, 120, 250, 500, 1000, 4000):
        text = await context(api, user, max_token_size=size, **extra)
        assert count_tokens(text) <= size, (size, text)
    assert UNFLUSHED in await context(api, user, max_token_size=4000, **extra)


async def test_custom_template_is_used(api: Api, user: str) -> None:
    template = "Known facts:\n{profile_section}\n\nHistory:\n{event_section}\n-- end of memory --"
    text = await context(api, user, customize_context_prompt=template, max_token_size=2000)
    assert text.startswith("Known facts:\n- ") and text.endswith("-- end of memory --")
    assert "<memory>" not in text and TIPS[0] in text.split("History:")[1]


async def test_profile_event_ratio_splits_the_budget(api: Api, user: str) -> None:
    template = "{profile_section}\n@@\n{event_section}"

    async def profile_lines(ratio: float) -> int:
        text = await context(
            api, user, customize_context_prompt=template, max_token_size=200, profile_event_ratio=ratio
        )
        return text.split("@@")[0].count("\n- ") + text.startswith("- ")

    few, many = await profile_lines(0.2), await profile_lines(0.9)
    assert 0 < few < many
    assert await profile_lines(0.0) == 0


async def test_fill_window_with_events_uses_the_unused_profile_share(api: Api, user: str) -> None:
    params = {"max_token_size": 160, "only_topics": "basic_info", "profile_event_ratio": 0.9}
    plain = await context(api, user, **params)
    filled = await context(api, user, **params, fill_window_with_events="true")
    assert sum(t in filled for t in TIPS) > sum(t in plain for t in TIPS)


async def test_profile_filters_apply_to_the_context(api: Api, user: str) -> None:
    text = await context(api, user, only_topics="work", max_token_size=2000)
    assert "work::title: airline pilot" in text and "interest::" not in text and "basic_info::" not in text
    status, body = await api.call(
        "GET", f"/users/context/{user}?max_token_size=2000&prefer_topics=basic_info&&prefer_topics=work"
    )
    profile = body["data"]["context"].split("## Past events")[0]
    assert profile.index("basic_info::name") < profile.index("work::title") < profile.index("interest::")
    capped = await context(
        api, user, max_subtopic_size=2, topic_limits_json=json.dumps({"work": 0}), max_token_size=2000
    )
    assert capped.count("interest::") == 2 and "work::" not in capped


async def test_chats_rank_the_matching_event_first(api: Api, user: str) -> None:
    def first_event(text: str) -> str:
        return text.split("## Past events\n")[1].splitlines()[0]

    assert first_event(await context(api, user, max_token_size=2000)).endswith(TIPS[-1])  # newest first
    chats = [
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me about the cat named Miso"},
    ]
    searched = await context(
        api, user, chats_str=json.dumps(chats), max_token_size=2000, event_similarity_threshold=0.3
    )
    assert first_event(searched).startswith("- [") and first_event(searched).endswith(TIPS[0])
    assert TIPS[2] not in searched  # under the similarity threshold


@pytest.mark.parametrize(
    "query,field",
    [
        ({"profile_event_ratio": "2"}, "profile_event_ratio"),
        ({"max_token_size": "-1"}, "max_token_size"),
        ({"customize_context_prompt": "no placeholders here"}, "customize_context_prompt"),
        ({"chats_str": '{"role": "user"}'}, "chats_str"),
        ({"topic_limits_json": "{nope"}, "topic_limits_json"),
        ({"time_range_in_days": "soon"}, "time_range_in_days"),
        ({"event_similarity_threshold": "high"}, "event_similarity_threshold"),
        ({"fill_window_with_events": "perhaps"}, "fill_window_with_events"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(api: Api, query: dict, field: str) -> None:
    message = await rejected(api, f"/users/context/{new_user()}", query)
    assert message.startswith(f"{field}:"), message


async def test_memobase_sdk_context_call(user: str, stack: Stack) -> None:
    def session() -> str:
        sdk_user = MemoBaseClient(project_url=stack.url, api_key=TOKEN).get_user(user, no_get=True)
        return sdk_user.context(
            max_token_size=300,
            prefer_topics=["work", "basic_info"],
            topic_limits={"interest": 1},
            profile_event_ratio=0.5,
            require_event_summary=True,
            time_range_in_days=30,
            chats=[{"role": "user", "content": "Should I go skiing in the Alps?"}],
            event_similarity_threshold=0.1,
            customize_context_prompt="# About the user\n{profile_section}\n# Events\n{event_section}",
            full_profile_and_only_search_event=True,
            fill_window_with_events=True,
        )

    text = await asyncio.to_thread(session)
    assert count_tokens(text) <= 300
    assert text.startswith("# About the user\n- work::title: airline pilot\n- basic_info::name: Alice\n")
    assert text.split("# Events\n")[1].startswith("- [") and TIPS[1] in text.split("# Events\n")[1].splitlines()[0]
