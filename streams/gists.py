"""Event gists: the searchable lines of an event, and their embeddings.

How an event splits into gists (``gist_texts``):
- The event tip, line by line: a bulleted or numbered line is one gist (the bullet marker
  dropped); any other line is split into its sentences. One statement per vector keeps a long
  summary from diluting a specific fact ("moved to Lyon in May") into an average of everything.
- Then one gist per profile delta, written "topic / sub topic: content" (underscores as spaces,
  so the words match a question's words): the facts the event recorded, in the normalised
  form the summary may have paraphrased away, so a search for the fact finds the event when
  the fact was learned.
- Empty lines are skipped and repeats (ignoring case) kept once, in order.

Gist ids are ``derived_id(id_base, "gist", index)``: the flush's event id for a new event, the
``EventEdited``'s own id for a rewrite, so a replay of either yields the same ids while a
rewrite never collides with the gists it retires.

With an embedder, the event text (the tip; the gists joined when there is no tip) and every
gist are embedded in one call; ``EmbeddingFailed`` is left to the caller's retry policy.
"""

import re

from streams.embeddings import Embedder
from streams.limits import Limits, cut
from streams.records import EventData, EventGist, derived_id

_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def gist_texts(data: EventData) -> list[str]:
    """The event's gists, in order (see the module docstring for the rule)."""
    texts: list[str] = []
    for line in (data.event_tip or "").splitlines():
        line = line.strip()
        if _BULLET.match(line):
            texts.append(_BULLET.sub("", line, count=1))
        else:
            texts.extend(_SENTENCE_END.split(line))
    for delta in data.profile_delta:
        topic = delta.attributes.get("topic", "").replace("_", " ")
        sub_topic = delta.attributes.get("sub_topic", "").replace("_", " ")
        texts.append(f"{topic} / {sub_topic}: {delta.content}")
    seen: set[str] = set()
    unique = []
    for text in (t.strip() for t in texts):
        if text and text.lower() not in seen:
            seen.add(text.lower())
            unique.append(text)
    return unique


async def searchable(
    data: EventData, id_base: str, embedder: Embedder | None, limits: Limits
) -> tuple[list[float] | None, list[EventGist]]:
    """The event's embedding (None without an embedder) and its gists (at most
    ``limits.gists_per_event``, each cut to ``limits.slot_chars``), embedded alike."""
    texts = [cut(text, limits.slot_chars) for text in gist_texts(data)[: limits.gists_per_event]]
    whole = (data.event_tip or "").strip() or "\n".join(texts)
    vectors: list[list[float] | None] = [None] * (len(texts) + 1)
    if embedder is not None and whole:
        vectors = list(await embedder.embed([whole, *texts]))
    gists = [
        EventGist(gist_id=derived_id(id_base, "gist", str(index)), content=text, embedding=vector)
        for index, (text, vector) in enumerate(zip(texts, vectors[1:]))
    ]
    return vectors[0], gists
