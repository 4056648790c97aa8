"""Extraction through any OpenAI-compatible chat endpoint, with the official ``openai`` client."""

import json
import logging

from openai import AsyncOpenAI, OpenAIError
from pydantic import ValidationError

from streams.events import ChatMessage
from streams.extraction import Extraction, ExtractionFailed
from streams.profile import Profile
from streams.prompts import extract as prompt

log = logging.getLogger(__name__)


class LLMExtractor:
    """One chat call per flush; a malformed answer is asked for once more, then the call fails.

    Transport errors (timeouts, 5xx) raise ``ExtractionFailed`` at once: the extract agent owns
    the retry-with-backoff policy, so a slow endpoint is not hammered from two places.
    """

    name = "llm"

    def __init__(self, base_url: str, api_key: str, model: str, timeout: float) -> None:
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self._model = model

    async def extract(self, chats: list[ChatMessage], profile: Profile) -> Extraction:
        request = prompt.messages(chats, profile)
        problem = ""
        for _ in range(2):
            text = await self._complete(request)
            try:
                return Extraction.model_validate(json.loads(text))
            except (json.JSONDecodeError, ValidationError) as exc:
                problem = f"malformed LLM answer: {str(exc).splitlines()[0]}"
                log.warning("%s; asking once more", problem)
        raise ExtractionFailed(problem)

    async def _complete(self, request: list[dict[str, str]]) -> str:
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=request,
                temperature=0,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "profile_extraction", "schema": prompt.ANSWER_SCHEMA},
                },
            )
        except OpenAIError as exc:
            raise ExtractionFailed(f"LLM call failed: {type(exc).__name__}: {exc}") from exc
        if not response.choices or response.choices[0].message.content is None:
            return ""
        return response.choices[0].message.content
