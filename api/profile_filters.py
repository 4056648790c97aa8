"""Choosing which profile slots to show, and in what order (pure; shared by profile and context).

Follows Memobase's ``truncate_profiles``: start from the newest slots first, keep only
``only_topics``, move ``prefer_topics`` to the front (in the order given), cap the sub_topics
per topic (``topic_limits`` overrides ``max_subtopic_size`` per topic), then ``topk``, then a
token budget that keeps a prefix of whole lines. Topics are compared case-insensitively.

Beyond Memobase: when the recent chats are given, slots that share words with them come
right after the preferred topics' order (more shared words first), so a budget keeps the
slots the conversation is about. Memobase asks an LLM for this; a word overlap is cheap,
deterministic and needs no model on the read path.
"""

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api.token_budget import fit

_WORD = re.compile(r"[^\W_]{3,}")
_STOPWORDS = frozenset(
    "the and for are but not you your with this that have has had was were what when where who how why "
    "can could would should will just about from they them their there then than also its into our out "
    "all any some very really like".split()
)


@dataclass(frozen=True)
class ProfileFilter:
    prefer_topics: tuple[str, ...] = ()
    only_topics: tuple[str, ...] = ()
    max_subtopic_size: int | None = None
    topic_limits: Mapping[str, int] = field(default_factory=dict)
    topk: int | None = None
    max_token_size: int | None = None
    chats: tuple[str, ...] = ()  # recent chat contents: rank slots by the words they share with them


def profile_line(profile: Mapping[str, Any]) -> str:
    """How one slot reads in a context, and what it costs against a token budget."""
    return f"- {profile['topic']}::{profile['sub_topic']}: {profile['content']}"


def words(text: str) -> set[str]:
    """The content words of ``text``: lowercase, three letters or more, common words left out."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _key(topic: str) -> str:
    return topic.strip().casefold()


def _relevance(profile: Mapping[str, Any], chat_words: set[str]) -> int:
    return len(chat_words & words(f"{profile['topic']} {profile['sub_topic']} {profile['content']}"))


def select_profiles(profiles: list[dict[str, Any]], spec: ProfileFilter) -> list[dict[str, Any]]:
    """The slots to show, best first; ``profiles`` are expected newest first (as ``list_profiles`` gives them)."""
    chosen = list(profiles)
    if spec.only_topics:
        only = {_key(t) for t in spec.only_topics}
        chosen = [p for p in chosen if _key(p["topic"]) in only]
    rank: dict[str, int] = {}
    for topic in spec.prefer_topics:
        rank.setdefault(_key(topic), len(rank))
    chat_words = words(" ".join(spec.chats))
    if rank or chat_words:
        chosen.sort(
            key=lambda p: (rank.get(_key(p["topic"]), len(rank)), -_relevance(p, chat_words) if chat_words else 0)
        )
    if spec.topic_limits or spec.max_subtopic_size is not None:
        limits = {_key(t): n for t, n in spec.topic_limits.items()}
        seen: Counter[str] = Counter()
        kept = []
        for p in chosen:
            topic = _key(p["topic"])
            limit = limits.get(topic, spec.max_subtopic_size)
            if limit is None or seen[topic] < limit:
                kept.append(p)
                seen[topic] += 1
        chosen = kept
    if spec.topk is not None:
        chosen = chosen[: spec.topk]
    if spec.max_token_size is not None:
        chosen = chosen[: len(fit(map(profile_line, chosen), spec.max_token_size)[0])]
    return chosen
