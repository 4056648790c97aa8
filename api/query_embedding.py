"""Embedding a search query on the read path, falling back to word search when it cannot."""

import logging

from api.deps import Deps
from streams.embeddings import EmbeddingFailed

log = logging.getLogger(__name__)


async def query_embedding(d: Deps, text: str) -> list[float] | None:
    """The embedding of ``text``, or None to rank by words (no embedder, or it failed: a read still answers)."""
    if d.embedder is None:
        return None
    try:
        return (await d.embedder.embed([text]))[0]
    except EmbeddingFailed as exc:
        log.warning("search falls back to words: %s", exc)
        return None
