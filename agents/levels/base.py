"""Adaptation levels: what each level adds on top of the bare model, looked up by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from agents.backends.base import Backend
from agents.errors import UnknownNameError
from agents.types import PromptSet, ReplyEvent, Turn

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool


class Passage(Protocol):
    """A retrieved passage of the knowledge base (what `knowledge/` returns, structurally)."""

    text: str
    source: str
    page: int | None
    date: str | None
    score: float


class KnowledgeSearch(Protocol):
    """What the `rag` level and the `knowledge_search` tool need from the knowledge base."""

    async def search(self, query: str, k: int) -> Sequence[Passage]: ...

    async def is_empty(self) -> bool: ...


@dataclass(slots=True)
class TurnContext:
    """Everything a level needs for one turn; built by the turn runner."""

    history: Sequence[Turn]  # earlier complete turns, oldest first
    text: str  # the user's new message
    backend: Backend
    model: BaseChatModel
    prompts: PromptSet
    token_budget: int
    tools: list[BaseTool] = field(default_factory=list)  # tools available to the agent level
    knowledge: KnowledgeSearch | None = None
    max_steps: int = 6
    rag_top_k: int = 5
    lang: str = "en"  # the user's language, for the few texts a level writes itself


class Level(ABC):
    """One adaptation level. `stream` yields reply events; it must not store anything itself."""

    name: str
    description: Mapping[str, str]  # language code -> one line
    needs_tools: ClassVar[bool] = False  # True: the turn runner builds the tools (calculator, search, knowledge)
    grounded: ClassVar[bool] = False  # answers from sources (passages, tool results): its figures are checked

    @abstractmethod
    def stream(self, ctx: TurnContext) -> AsyncIterator[ReplyEvent]:
        """Answer `ctx.text` and yield the reply as it comes."""


class LevelRegistry:
    def __init__(self, levels: Sequence[Level] = ()) -> None:
        self._levels: dict[str, Level] = {}
        for level in levels:
            self.register(level)

    def register(self, level: Level) -> None:
        self._levels[level.name] = level

    def names(self) -> list[str]:
        return list(self._levels)

    def all(self) -> dict[str, Level]:
        return dict(self._levels)

    def __contains__(self, name: object) -> bool:
        return name in self._levels

    def get(self, name: str) -> Level:
        if name not in self._levels:
            raise UnknownNameError("level", name, self.names())
        return self._levels[name]
