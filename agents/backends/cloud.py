"""The cloud backend: any OpenAI-compatible chat API through langchain-openai."""

from __future__ import annotations

import asyncio
import contextlib

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from agents.backends.base import Backend
from agents.errors import AgentsError, ModelUnavailableError


class CloudBackend(Backend):
    name = "cloud"
    description = {
        "en": "cloud model via an OpenAI-compatible API",
        "ru": "облачная модель через OpenAI-совместимый API",
    }

    def __init__(self, *, model: str, api_key: SecretStr | None, base_url: str | None, timeout: float,
                 max_retries: int, temperature: float = 0.3) -> None:
        self._params = dict(model=model, base_url=base_url, timeout=timeout, max_retries=max_retries,
                            temperature=temperature)
        self._api_key = api_key
        self._model: BaseChatModel | None = None

    def unavailable_reason(self) -> str | None:
        if self._api_key is None or not self._api_key.get_secret_value():
            return "the cloud model needs OPENAI_API_KEY"
        return None

    async def warm_up(self) -> None:
        """Build the client now, in a thread: importing langchain-openai takes about a second, which the first
        question would otherwise spend with the event loop blocked."""
        with contextlib.suppress(AgentsError):
            await asyncio.to_thread(self.chat_model)

    def chat_model(self) -> BaseChatModel:
        if self._model is None:
            if reason := self.unavailable_reason():
                raise ModelUnavailableError(reason)
            from langchain_openai import ChatOpenAI

            # An explicit timeout and retry count: without them a stalled request can hang forever.
            self._model = ChatOpenAI(
                api_key=self._api_key,
                streaming=True,
                stream_usage=True,
                **self._params,  # type: ignore[arg-type]
            )
        return self._model
