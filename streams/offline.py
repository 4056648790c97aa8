"""A deterministic extractor for running without an LLM.

It reads only the user's own messages and recognises a handful of plain first-person
sentences ("my name is …", "I live in …", "I work as …", "I like …"). It exists so that a
first run of ``memstream dev`` shows the whole flow — buffer, flush, profile, event —
with no model configured; it is not meant to understand conversation.

It scans words, not patterns: a message is cut into clauses at ``. , ; ! ?``, each clause into
words, and each phrase runs from its opening words to the word "and" or the end of the clause.
Every step is linear in the message, so no input (24 KB of spaces, say) can make it slow.
"""

import re

from streams.extraction import Extraction, ProfileChange
from streams.profile import Profile, slot_key
from streams.project_config import ProjectConfig
from streams.records import ChatMessage

_CLAUSE_END = re.compile(r"[.,;!?]")
# (opening words, topic, sub_topic); the first that matches at a word wins.
_RULES: list[tuple[tuple[str, ...], str, str]] = [
    (("my", "name", "is"), "basic_info", "name"),
    (("call", "me"), "basic_info", "name"),
    (("i", "live", "in"), "basic_info", "city"),
    (("i", "am", "from"), "basic_info", "city"),
    (("i'm", "from"), "basic_info", "city"),
    (("i", "moved", "to"), "basic_info", "city"),
    (("i", "work", "as"), "work", "title"),
    (("i", "am", "working", "as"), "work", "title"),
    (("i'm", "working", "as"), "work", "title"),
    (("i", "work", "at"), "work", "company"),
    (("i", "work", "for"), "work", "company"),
    (("i", "really", "like"), "interest", "likes"),
    (("i", "like"), "interest", "likes"),
    (("i", "love"), "interest", "likes"),
    (("i", "enjoy"), "interest", "likes"),
]
_NAME = slot_key("basic_info", "name")
_TITLE = slot_key("work", "title")
# Slots that collect several values; the others keep only the latest statement.
_ACCUMULATING = {slot_key("interest", "likes")}


def _phrase(words: list[str], start: int, key: str) -> str:
    """The value opening at ``words[start]``: capitalised words for a name, else up to "and"."""
    taken: list[str] = []
    for word in words[start:]:
        if key == _NAME:
            if not (word[:1].isupper() and word[:1].isalpha()):
                break
        elif word.lower() == "and":
            break
        taken.append(word)
    if key == _TITLE and len(taken) > 1 and taken[0].lower() in ("a", "an"):
        taken = taken[1:]
    return " ".join(taken)


def statements(text: str) -> list[tuple[str, str, str]]:
    """``(topic, sub_topic, value)`` for each plain first-person statement in ``text``, in order."""
    found = []
    for clause in _CLAUSE_END.split(text):
        words = clause.split()
        lowered = [w.lower() for w in words]
        index = 0
        while index < len(words):
            for opening, topic, sub_topic in _RULES:
                end = index + len(opening)
                if tuple(lowered[index:end]) == opening:
                    value = _phrase(words, end, slot_key(topic, sub_topic))
                    if value:
                        found.append((topic, sub_topic, value))
                        index = end
                    break
            index += 1
    return found


class OfflineExtractor:
    async def extract(self, chats: list[ChatMessage], profile: Profile, config: ProjectConfig) -> Extraction:
        """No calls, so no usage; ``config`` is not read: strict mode applies in ``plan_changes``."""
        found: dict[str, tuple[str, str, list[str]]] = {}
        for message in chats:
            if message.role != "user":
                continue
            for topic, sub_topic, value in statements(message.content):
                entry = found.setdefault(slot_key(topic, sub_topic), (topic, sub_topic, []))
                if value.lower() not in (v.lower() for v in entry[2]):
                    entry[2].append(value)
        changes = [self._change(profile, key, *entry) for key, entry in found.items()]
        return Extraction(changes=[c for c in changes if c is not None], event_tip=_summary(chats))

    @staticmethod
    def _change(profile: Profile, key: str, topic: str, sub_topic: str, values: list[str]) -> ProfileChange | None:
        existing = profile.get(key)
        if existing is None:
            content = ", ".join(values) if key in _ACCUMULATING else values[-1]
            return ProfileChange(op="add", topic=topic, sub_topic=sub_topic, content=content)
        if key in _ACCUMULATING:
            known = [v.strip() for v in existing.content.split(",")]
            new = [v for v in values if v.lower() not in (k.lower() for k in known)]
            if not new:
                return None
            content = ", ".join(known + new)
        else:
            content = values[-1]
            if content == existing.content:
                return None
        return ProfileChange(op="update", topic=topic, sub_topic=sub_topic, content=content)


def _summary(chats: list[ChatMessage]) -> str:
    said = [" ".join(m.content.split()) for m in chats if m.role == "user"]
    text = " ".join(s for s in said if s)
    if not text:
        return "The assistant spoke; the user said nothing."
    return "User said: " + (text if len(text) <= 300 else text[:297] + "...")
