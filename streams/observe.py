"""What the extractor and embedder report about each call they make, for whoever watches
(``memstream.metrics`` counts them for Prometheus). The domain only knows this protocol."""

from typing import Protocol


class CallObserver(Protocol):
    def llm_call(self, model: str, ok: bool, seconds: float, input_tokens: int, output_tokens: int) -> None:
        """One chat completion: answered (``ok``) or not, how long it took, the tokens it used."""

    def embeddings_call(self, model: str, ok: bool, seconds: float, texts: int) -> None:
        """One embeddings call for ``texts`` texts."""


class Unobserved:
    """Reports go nowhere."""

    def llm_call(self, model: str, ok: bool, seconds: float, input_tokens: int, output_tokens: int) -> None:
        pass

    def embeddings_call(self, model: str, ok: bool, seconds: float, texts: int) -> None:
        pass
