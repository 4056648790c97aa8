"""Prompt for the one extraction call of a flush: chats + current profile + project config →
slot changes, an event summary and (when the project configures them) event tags.

Why it is shaped this way:
- One call does everything a flush needs (profile changes, value validation, summary, tags):
  each extra call would resend the whole conversation, doubling the cost and the latency.
- The model sees the current profile with each slot's key, so it can *merge* into an existing
  slot (answering an update with the merged content) instead of adding a near-duplicate.
- Chats are rendered one per line with their time and speaker alias, because facts such as
  "yesterday" or "my sister (Ann) said" only make sense with both.
- Topics come from the project config (``ProjectConfig.topics()``): their descriptions tell the
  model what belongs where, a sub topic's ``update_description`` is its merge rule.
- Validation (``profile_validate_mode``, or a sub topic's ``validate_value``) is asked for in the
  same call: the model already holds the value and the description, so it can leave a poor fit
  out. Only the slots that differ from the project-wide mode are marked, to keep the list short.
- Strict mode is told to the model so it does not spend tokens on slots that will be dropped,
  but it is *enforced* in code (``streams.slot_changes.plan_changes``); the prompt is advice.
- The answer is JSON matching ``answer_schema(config)``, sent as the response format; the caller
  validates it with pydantic and re-asks once (``streams.prompts.repair``) if it does not fit.
  The schema names the configured tags as an enum, so a model that follows it cannot invent one.
"""

import json
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

from streams.profile import Profile
from streams.project_config import ProjectConfig, SubTopic
from streams.records import ChatMessage

ROLE = """You keep the long-term memory of one person, "the user", for an AI assistant.
Read the new conversation and decide two things: which facts about the user the profile should
gain, change or lose, and how to summarise what happened in the conversation."""

RULES = """Profile rules:
- Keep only what the conversation states or clearly implies about the user: not facts about
  the assistant or other people (unless they describe the user's life), and no guesses.
- A slot is named by "topic" and "sub_topic", both lowercase snake_case.
- When a slot already exists, answer "update" with its complete new content: keep what is still
  true and fold in what is new, or follow the slot's merge rule where one is given.
- When the conversation shows an existing slot is wrong or over and nothing replaces it, answer
  "delete" for it. A fact with no slot yet is an "add".
- Contents are short phrases, not sentences. Write dates as YYYY-MM-DD when they are known, and
  resolve relative dates ("last week") against the time of the message that says them.
- If nothing is worth keeping, answer an empty "changes" list."""

STRICT = "- Use only the topics and sub_topics listed below; leave out a fact that fits none of them."
OPEN = "- Prefer the topics and sub_topics listed below; open a new one only for a fact that fits none of them."
VALIDATE_ALL = (
    "- Before writing a value, check that it fits the description of its topic and sub_topic, and leave it "
    "out if it does not."
)
VALIDATE_EXEMPT = " Slots marked [no check] are exempt."
VALIDATE_MARKED = (
    "- For slots marked [check], write a value only if it fits the slot's description; otherwise leave it out."
)

SUMMARY = 'Summary ("event_tip"): one paragraph on what happened: what the user did, said, planned or felt, with dates when known.'
SUMMARY_THEMED = 'Summary ("event_tip"): one paragraph on what happened, focused on: {theme}'

TAGS = """Event tags ("event_tags"): for each tag below that applies to this conversation, give its
value in a few words; leave out the tags that do not apply.
{tags}"""

LANGUAGE = "Language: write contents, tag values and the summary in {language}."
LANGUAGE_OF_USER = "Language: write contents and the summary in the language the user writes in."

ANSWER = "Answer with one JSON object of this form and nothing else:\n{example}"

USER = """Current profile (topic::sub_topic = content):
{profile}

New conversation, oldest message first:
{chats}"""


def _validated(sub: SubTopic, config: ProjectConfig) -> bool:
    return config.profile_validate_mode if sub.validate_value is None else sub.validate_value


def render_topics(config: ProjectConfig) -> str:
    lines = []
    for topic in config.topics():
        lines.append(f"- {topic.topic}" + (f": {topic.description}" if topic.description else ""))
        lines.extend(f"  - {_render_sub_topic(sub, config)}" for sub in topic.sub_topics)
    return "\n".join(lines)


def _render_sub_topic(sub: SubTopic, config: ProjectConfig) -> str:
    text = sub.name + (f": {sub.description}" if sub.description else "")
    if sub.update_description:
        text += f" (merge rule: {sub.update_description})"
    if _validated(sub, config) != config.profile_validate_mode:
        text += " [check]" if _validated(sub, config) else " [no check]"
    return text


def render_chats(chats: list[ChatMessage]) -> str:
    lines = []
    for message in chats:
        speaker = message.alias or message.role
        when = f"[{message.created_at}] " if message.created_at else ""
        lines.append(f"{when}{speaker} ({message.role}): {message.content}")
    return "\n".join(lines)


def render_profile(profile: Profile) -> str:
    if not profile:
        return "(empty)"
    return "\n".join(f"{key} = {slot.content}" for key, slot in sorted(profile.items()))


def _example(config: ProjectConfig) -> str:
    example: dict[str, Any] = {
        "changes": [{"op": "add|update|delete", "topic": "...", "sub_topic": "...", "content": "..."}],
        "event_tip": "...",
    }
    if config.event_tags:
        example["event_tags"] = [{"tag": config.event_tags[0].name, "value": "..."}]
    return json.dumps(example, ensure_ascii=False)


def system_prompt(config: ProjectConfig) -> str:
    rules = [RULES, STRICT if config.profile_strict_mode else OPEN]
    marked = any(
        _validated(sub, config) != config.profile_validate_mode for t in config.topics() for sub in t.sub_topics
    )
    if config.profile_validate_mode:
        rules.append(VALIDATE_ALL + (VALIDATE_EXEMPT if marked else ""))
    elif marked:
        rules.append(VALIDATE_MARKED)
    sections = [
        ROLE,
        "\n".join(rules),
        "Profile topics and their sub_topics:\n" + render_topics(config),
        SUMMARY_THEMED.format(theme=config.event_theme_requirement) if config.event_theme_requirement else SUMMARY,
    ]
    if config.event_tags:
        specs = "\n".join(f"- {t.name}" + (f": {t.description}" if t.description else "") for t in config.event_tags)
        sections.append(TAGS.format(tags=specs))
    sections.append(LANGUAGE.format(language=config.language) if config.language else LANGUAGE_OF_USER)
    sections.append(ANSWER.format(example=_example(config)))
    return "\n\n".join(sections)


def messages(chats: list[ChatMessage], profile: Profile, config: ProjectConfig) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": system_prompt(config)},
        {"role": "user", "content": USER.format(profile=render_profile(profile), chats=render_chats(chats))},
    ]


def answer_schema(config: ProjectConfig) -> dict[str, Any]:
    """The JSON schema of the answer; ``event_tags`` is part of it only when the project has tags."""
    properties: dict[str, Any] = {
        "changes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "op": {"type": "string", "enum": ["add", "update", "delete"]},
                    "topic": {"type": "string"},
                    "sub_topic": {"type": "string"},
                    "content": {"type": "string"},
                },
                "required": ["op", "topic", "sub_topic", "content"],
                "additionalProperties": False,
            },
        },
        "event_tip": {"type": "string"},
    }
    if config.event_tags:
        properties["event_tags"] = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "tag": {"type": "string", "enum": [t.name for t in config.event_tags]},
                    "value": {"type": "string"},
                },
                "required": ["tag", "value"],
                "additionalProperties": False,
            },
        }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
