"""Prompt for the single extraction call: chats + current profile → slot changes + event summary.

Why it is shaped this way:
- The model sees the current profile with each slot's key, so it can *merge* into an existing
  slot (returning the merged content as an update) instead of adding a near-duplicate.
- Chats are rendered one per line with their time and speaker alias, because facts such as
  "yesterday" or "my sister (Ann) said" only make sense with both.
- The answer is JSON matching ``ANSWER_SCHEMA``; the caller validates it with pydantic and asks
  once more if it does not parse, so the prompt asks for JSON only and nothing else.
- The suggested topics are a guide, not a cage: the model may open a new topic when a fact fits
  none of them (strict mode, where configured, is enforced in code, not in the prompt).
"""

from streams.events import ChatMessage
from streams.profile import Profile

DEFAULT_TOPICS: dict[str, list[str]] = {
    "basic_info": ["name", "age", "gender", "birth_date", "city", "nationality"],
    "contact_info": ["email", "phone", "social_media"],
    "education": ["school", "degree", "major"],
    "demographics": ["marital_status", "children", "household"],
    "work": ["company", "title", "industry", "skills"],
    "interest": ["likes", "dislikes", "hobbies", "books", "movies", "music", "food", "sports"],
    "psychological": ["personality", "values", "goals", "worries"],
    "life_event": ["marriage", "relocation", "health", "milestones"],
}

SYSTEM = """You maintain a long-term memory of one person (the user) for an assistant.
From the new conversation, decide what should change in the user's profile, and write a
one-paragraph summary of what happened in the conversation.

Rules:
- Only record facts about the user that the conversation states or clearly implies.
- A profile slot is identified by "topic" and "sub_topic" (lowercase, snake_case).
- If a slot already exists and the new fact refines or extends it, answer op "update" with
  the full merged content (keep what is still true, add what is new).
- If the conversation shows an existing slot is no longer true and nothing replaces it,
  answer op "delete" for it.
- New facts with no existing slot get op "add".
- Keep each content short: a phrase, not a paragraph. Write dates as YYYY-MM-DD when known.
- If nothing about the user is worth keeping, return an empty "changes" list.

Suggested topics and sub_topics:
{topics}

Answer with JSON only, of this form:
{{"changes": [{{"op": "add|update|delete", "topic": "...", "sub_topic": "...", "content": "..."}}],
  "event_tip": "summary of the conversation"}}"""

USER = """Current profile (topic::sub_topic = content):
{profile}

New conversation:
{chats}"""

ANSWER_SCHEMA: dict = {
    "type": "object",
    "properties": {
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
    },
    "required": ["changes", "event_tip"],
    "additionalProperties": False,
}


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


def messages(chats: list[ChatMessage], profile: Profile) -> list[dict[str, str]]:
    topics = "\n".join(f"- {topic}: {', '.join(subs)}" for topic, subs in DEFAULT_TOPICS.items())
    return [
        {"role": "system", "content": SYSTEM.format(topics=topics)},
        {"role": "user", "content": USER.format(profile=render_profile(profile), chats=render_chats(chats))},
    ]
