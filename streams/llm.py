"""Extraction through any OpenAI-compatible chat endpoint, with the official ``openai`` client."""

import json
import logging
import time
from typing import Any

from openai import AsyncOpenAI, OpenAIError
from openai.types.chat import ChatCompletionMessageParam
from pydantic import ValidationError

from streams.extraction import Extraction, ExtractionFailed, Usage
from streams.observe import CallObserver, Unobserved
from streams.profile import Profile
from streams.project_config import ProjectConfig
from streams.prompts import extract as prompt
from streams.prompts import repair
from streams.records import ChatMessage

log = logging.getLogger(__name__)


class LLMExtractor:
    """One chat call per flush; a malformed answer is re-asked once (two calls at most), then it fails.

    Transport errors (timeouts, 5xx) raise ``ExtractionFailed`` at once: the extract agent owns
    the retry-with-backoff policy, so a slow endpoint is not hammered from two places.

    Usage is the sum over the calls that were answered, from the endpoint's ``usage`` (zero
    tokens when it reports none), under the configured model name so a project's bill groups
    by what it chose; a failure carries the usage spent before it. Each call is reported to
    ``observer`` (answered or not, its time and tokens).
    """

    def __init__(
        self, base_url: str, api_key: str, model: str, timeout: float, observer: CallObserver | None = None
    ) -> None:
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self._model = model
        self._observer = observer or Unobserved()

    async def extract(self, chats: list[ChatMessage], profile: Profile, config: ProjectConfig) -> Extraction:
        request = prompt.messages(chats, profile, config)
        schema = prompt.answer_schema(config)
        spent = Usage(model=self._model)
        problem = ""
        for _ in range(2):
            try:
                text, usage = await self._complete(request, schema)
            except ExtractionFailed as exc:
                raise ExtractionFailed(str(exc), spent) from exc
            spent += usage
            try:
                return Extraction.model_validate(json.loads(text)).model_copy(update={"usage": spent})
            except (json.JSONDecodeError, ValidationError) as exc:
                problem = f"malformed LLM answer: {str(exc).splitlines()[0]}"
                log.warning("%s; asking once more", problem)
                request = repair.messages(request, text, problem)
        raise ExtractionFailed(problem, spent)

    async def _complete(self, request: list[ChatCompletionMessageParam], schema: dict[str, Any]) -> tuple[str, Usage]:
        started = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=request,
                temperature=0,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "profile_extraction", "schema": schema},
                },
            )
        except OpenAIError as exc:
            self._observer.llm_call(self._model, False, time.perf_counter() - started, 0, 0)
            raise ExtractionFailed(f"LLM call failed: {type(exc).__name__}: {exc}") from exc
        tokens = response.usage
        usage = Usage(
            model=self._model,
            calls=1,
            input_tokens=tokens.prompt_tokens if tokens else 0,
            output_tokens=tokens.completion_tokens if tokens else 0,
        )
        self._observer.llm_call(
            self._model, True, time.perf_counter() - started, usage.input_tokens, usage.output_tokens
        )
        if not response.choices or response.choices[0].message.content is None:
            return "", usage
        return response.choices[0].message.content, usage
