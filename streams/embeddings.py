"""Embeddings through any OpenAI-compatible ``/embeddings`` endpoint, with the official client.

Used by the extract agent (events and their gists, embedded once and carried in the record)
and by the API (search queries). Without an endpoint there is no ``Embedder`` and search
falls back to ranking by words.
"""

import time

from openai import AsyncOpenAI, OpenAIError

from memstream.settings import Settings
from streams.observe import CallObserver, Unobserved


class EmbeddingFailed(Exception):
    """The endpoint did not return embeddings."""


class Embedder:
    def __init__(
        self, base_url: str, api_key: str, model: str, timeout: float, observer: CallObserver | None = None
    ) -> None:
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=1)
        self.model = model
        self._observer = observer or Unobserved()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        if not texts:
            return []
        started = time.perf_counter()
        try:
            response = await self._client.embeddings.create(model=self.model, input=texts)
        except OpenAIError as exc:
            self._observer.embeddings_call(self.model, False, time.perf_counter() - started, len(texts))
            raise EmbeddingFailed(f"embedding call failed: {type(exc).__name__}: {exc}") from exc
        self._observer.embeddings_call(self.model, True, time.perf_counter() - started, len(texts))
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise EmbeddingFailed(f"asked for {len(texts)} embeddings, got {len(ordered)}")
        return [list(item.embedding) for item in ordered]


def make_embedder(settings: Settings, observer: CallObserver | None = None) -> Embedder | None:
    if not settings.embedding_base_url:
        return None
    return Embedder(
        settings.embedding_base_url,
        settings.embedding_api_key,
        settings.embedding_model,
        settings.llm_timeout,
        observer,
    )
