"""A deterministic extractor for running without an LLM.

It reads only the user's own messages and recognises a handful of plain first-person
sentences ("my name is …", "I live in …", "I work as …", "I like …"). It exists so that a
first run of ``memstream dev`` shows the whole flow — buffer, flush, profile, event —
with no model configured; it is not meant to understand conversation.
"""

import re

from streams.events import ChatMessage
from streams.extraction import Extraction, ProfileChange
from streams.profile import Profile, slot_key
from streams.project_config import ProjectConfig

_END = r"(?=[.,;!?]|\s+and\s|$)"
_RULES: list[tuple[str, str, re.Pattern[str]]] = [
    ("basic_info", "name", re.compile(r"\b(?i:my name is|call me)\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)")),
    ("basic_info", "city", re.compile(rf"\bI (?:live in|am from|'m from|moved to)\s+([^.,;!?]+?){_END}", re.I)),
    ("work", "title", re.compile(rf"\bI (?:work as|am working as|'m working as)\s+(?:an?\s+)?([^.,;!?]+?){_END}", re.I)),
    ("work", "company", re.compile(rf"\bI work (?:at|for)\s+([^.,;!?]+?){_END}", re.I)),
    ("interest", "likes", re.compile(rf"\bI (?:really )?(?:like|love|enjoy)\s+([^.,;!?]+?){_END}", re.I)),
]
# Slots that collect several values; the others keep only the latest statement.
_ACCUMULATING = {slot_key("interest", "likes")}


class OfflineExtractor:
    name = "offline"

    async def extract(self, chats: list[ChatMessage], profile: Profile, config: ProjectConfig) -> Extraction:
        """No calls, so no usage; ``config`` is not read: strict mode applies in ``plan_changes``."""
        found: dict[str, tuple[str, str, list[str]]] = {}
        for message in chats:
            if message.role != "user":
                continue
            for topic, sub_topic, pattern in _RULES:
                for match in pattern.finditer(message.content):
                    value = match.group(1).strip()
                    entry = found.setdefault(slot_key(topic, sub_topic), (topic, sub_topic, []))
                    if value.lower() not in (v.lower() for v in entry[2]):
                        entry[2].append(value)
        changes = [self._change(profile, key, *entry) for key, entry in found.items()]
        return Extraction(
            changes=[c for c in changes if c is not None],
            event_tip=_summary(chats),
        )

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
    said = [m.content.strip() for m in chats if m.role == "user" and m.content.strip()]
    if not said:
        return "The assistant spoke; the user said nothing."
    text = " ".join(said)
    return "User said: " + (text if len(text) <= 300 else text[:297] + "...")
