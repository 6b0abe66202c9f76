"""Model backends: where the words come from (cloud API, local GGUF, fine-tuned GGUF), looked up by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from agents.errors import UnknownNameError

if TYPE_CHECKING:  # LangChain is imported once the bot polls (0.8 s of start-up)
    from langchain_core.language_models import BaseChatModel


class Backend(ABC):
    """A named source of a LangChain chat model (whose `bind_tools` works, natively or by constrained decoding)."""

    name: str
    description: Mapping[str, str]  # language code -> one line
    shared_worker: ClassVar[bool] = False  # True: one worker serves every chat (turns queue for it)
    # A fine-tune measured against its base (`adaptbot finetune --eval`): {"gain": 0.18, "cases": 40, ...}
    evaluation: Mapping[str, Any] | None = None

    @abstractmethod
    def chat_model(self) -> BaseChatModel:
        """The chat model to call; created lazily and cached by the backend."""

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot answer as configured (a missing key), or None; no network, no loading."""
        return None

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Prepare what the first question would otherwise wait for; by default nothing (local models stay lazy:
        they load gigabytes). A model that cannot be built yet says so on first use, not here."""

    async def ready(self) -> None:  # noqa: B027 - optional hook
        """Wait until `chat_model()` can be called without blocking the event loop; by default it never blocks."""

    def retry_model(self) -> BaseChatModel:
        """The chat model for `/retry` (a local model samples with a higher repetition penalty)."""
        return self.chat_model()

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (threads, model weights)."""


class ModelRegistry:
    """Backends by name: fixed ones registered at start-up plus providers scanned on each lookup
    (fine-tuned models appear without a restart)."""

    def __init__(self) -> None:
        self._fixed: dict[str, Backend] = {}
        self._providers: list[Callable[[], Mapping[str, Backend]]] = []

    def register(self, backend: Backend) -> None:
        self._fixed[backend.name] = backend

    def add_provider(self, provider: Callable[[], Mapping[str, Backend]]) -> None:
        self._providers.append(provider)

    def all(self) -> dict[str, Backend]:
        found = dict(self._fixed)
        for provider in self._providers:
            for name, backend in provider().items():
                found.setdefault(name, backend)
        return found

    def names(self) -> list[str]:
        return list(self.all())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._fixed or name in self.all())

    def get(self, name: str) -> Backend:
        if name in self._fixed:  # a fixed backend wins over a provider's of the same name (`all`): no scan
            return self._fixed[name]
        backends = self.all()
        if name not in backends:
            raise UnknownNameError("model", name, list(backends))
        return backends[name]

    async def aclose(self) -> None:
        for backend in self.all().values():
            await backend.aclose()
