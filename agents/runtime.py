"""The brain: registries of levels and models, tools and knowledge, and `start_turn` which runs one turn.

This is the only entry point callers (bot, terminal chat) use; what crosses it is plain data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from agents.backends.base import ModelRegistry
from agents.errors import (
    AgentsError,
    KnowledgeUnavailableError,
    ModelCallError,
    ModelTimeoutError,
    UnknownNameError,
)
from agents.guards import GuardConfig, guard_stream
from agents.levels.base import KnowledgeSearch, Level, LevelRegistry, Passage, TurnContext
from agents.prompts import load_prompts
from agents.types import PromptSet, ReplyEvent, TextDelta, Turn, reset_progress_callback, set_progress_callback

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

log = logging.getLogger(__name__)

ToolFactory = Callable[[], "BaseTool | None"]
_T = TypeVar("_T")


class TurnCancelled(AgentsError):
    """The turn was stopped on request (`/stop`)."""


@dataclass
class Brain:
    levels: LevelRegistry
    models: ModelRegistry
    prompts_path: Path | None = None
    token_budget: int = 3000
    max_steps: int = 6
    rag_top_k: int = 5
    # The longest silence from a model before the turn fails: a backstop behind the client's own timeout.
    turn_timeout: float = 60.0
    tool_factories: list[ToolFactory] = field(default_factory=list)
    knowledge: KnowledgeSearch | None = None
    _prompts: PromptSet | None = None
    _knowledge_down: bool = False  # an outage is logged when it starts and when it ends, not at every turn

    def prompts(self, system_override: str | None = None) -> PromptSet:
        if self._prompts is None:
            self._prompts = load_prompts(self.prompts_path)
        if system_override:
            return replace(self._prompts, system=system_override)
        return self._prompts

    def parse_mode(self, names: Sequence[str], level: str, model: str) -> tuple[str, str]:
        """Apply `/mode` arguments (levels and/or model names, any order) to the current (level, model)."""
        for raw in names:
            name = raw.strip().lower() if not raw.startswith("finetuned:") else raw.strip()
            if name in self.levels:
                level = name
            elif name in self.models:
                model = name
            else:
                raise UnknownNameError("mode", raw, self.levels.names() + self.models.names())
        return level, model

    def guarded_knowledge(self) -> KnowledgeSearch | None:
        """The knowledge base as levels and tools see it: any failure is logged and becomes KnowledgeUnavailable."""
        return None if self.knowledge is None else _GuardedKnowledge(self, self.knowledge)

    async def tools(self, knowledge: KnowledgeSearch | None = None) -> list[BaseTool]:
        """The agent's tools for this turn; `knowledge_search` only when the knowledge base has documents (and
        answers: the agent goes on without it during an outage)."""
        tools = [t for t in (factory() for factory in self.tool_factories) if t is not None]
        knowledge = knowledge or self.guarded_knowledge()
        if knowledge is None:
            return tools
        try:
            empty = await knowledge.is_empty()
        except KnowledgeUnavailableError:
            empty = True
        if not empty:
            from agents.tools.knowledge import make_knowledge_search_tool

            tools.append(make_knowledge_search_tool(knowledge, self.rag_top_k))
        return tools

    def _knowledge_failed(self, exc: Exception) -> None:
        if not self._knowledge_down:
            self._knowledge_down = True
            log.error("the knowledge base is unavailable (agent turns go on without knowledge_search, rag turns "
                      "say it is unavailable): %s", exc, exc_info=exc)
        else:
            log.debug("the knowledge base is still unavailable: %s", exc)

    def _knowledge_answered(self) -> None:
        if self._knowledge_down:
            self._knowledge_down = False
            log.warning("the knowledge base is available again")

    def start_turn(self, *, level: str, model: str, history: Sequence[Turn], text: str,
                   system_override: str | None = None, lang: str = "en", guards: GuardConfig | None = None,
                   retry: bool = False) -> TurnRun:
        """Start one turn. `guards`: the answer guards to apply (None, the default: the raw model, as the offline
        evaluation measures it); `retry`: the question is asked again (`/retry`), with the backend's retry model."""
        return TurnRun(self, level, model, history, text, system_override, lang, guards, retry)


class _GuardedKnowledge:
    """A knowledge base whose failures reach the log (once per outage) and the turn only as KnowledgeUnavailable."""

    def __init__(self, brain: Brain, inner: KnowledgeSearch) -> None:
        self._brain, self._inner = brain, inner

    async def search(self, query: str, k: int) -> Sequence[Passage]:
        return await self._call(self._inner.search(query, k))

    async def is_empty(self) -> bool:
        return await self._call(self._inner.is_empty())

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            result = await call
        except Exception as exc:  # noqa: BLE001 - whatever broke, the user hears "unavailable", the log the rest
            self._brain._knowledge_failed(exc)
            raise KnowledgeUnavailableError("the knowledge base is unavailable") from None
        self._brain._knowledge_answered()
        return result


_DONE = object()


@dataclass
class _Failure:
    error: BaseException


@dataclass
class _Started:
    """The turn's context is built and the model is about to be called; `shared`: it may queue for a worker."""

    shared: bool


class TurnRun:
    """One running turn: iterate it for reply events; `cancel()` stops it (the iterator raises TurnCancelled).

    Everything the turn awaits (the knowledge base, the model) runs in one task, so a cancel at any moment,
    even before that task has started, ends the iteration at once.
    """

    def __init__(self, brain: Brain, level: str, model: str, history: Sequence[Turn], text: str,
                 system_override: str | None, lang: str = "en", guards: GuardConfig | None = None,
                 retry: bool = False) -> None:
        self._brain = brain
        self._args = (level, model, history, text, system_override, lang)
        self._guards, self._retry = guards, retry
        # Events handed from the turn's task to the consumer: a batch at a time, one wake-up per batch (what one read
        # from the model brought), not a task switch per chunk.
        self._items: deque[object] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False
        # The model's silence is timed by one timer per turn, re-armed only when it falls due, not by a timer and a
        # task per wait (asyncio.wait_for): the consumer waits once per chunk the model sends.
        self._timeout: float | None = None
        self._silent_since = 0.0  # when the consumer began its current wait
        self._waiting = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._loop: asyncio.AbstractEventLoop  # set when iterated: only a waiting consumer's timer uses it

    def _put(self, item: object) -> None:
        self._items.append(item)
        self._ready.set()

    def _wait_began(self) -> None:
        """The consumer waits for the next event: the silence is timed from now (not while it was busy)."""
        self._waiting = True
        if self._timeout is None:
            return
        self._silent_since = self._loop.time()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._silent_since + self._timeout, self._check_silence)

    def _check_silence(self) -> None:
        self._watchdog = None
        if not self._waiting or self._timeout is None:
            return  # re-armed by the consumer's next wait
        due = self._silent_since + self._timeout
        if self._loop.time() >= due:
            self._timed_out = True
            self._ready.set()
        else:
            self._watchdog = self._loop.call_at(due, self._check_silence)

    def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        # Queued by us, not by the task: a task cancelled before its first step never runs its handlers.
        self._put(_Failure(TurnCancelled("stopped")))
        if self._task is not None:
            self._task.cancel()

    async def _context(self) -> tuple[TurnContext, Level]:
        level_name, model_name, history, text, system_override, lang = self._args
        brain = self._brain
        backend = brain.models.get(model_name)
        level = brain.levels.get(level_name)
        await backend.ready()  # the first question after start-up may wait for the client, not block the loop on it
        ctx = TurnContext(
            history=history, text=text, backend=backend,
            model=backend.retry_model() if self._retry else backend.chat_model(),
            prompts=brain.prompts(system_override), token_budget=brain.token_budget,
            knowledge=brain.guarded_knowledge(), max_steps=brain.max_steps, rag_top_k=brain.rag_top_k, lang=lang,
        )
        if level.needs_tools:
            ctx.tools = await brain.tools(ctx.knowledge)
        return ctx, level

    async def _pump(self) -> None:
        token = set_progress_callback(self._put)
        try:
            ctx, level = await self._context()
            self._put(_Started(ctx.backend.shared_worker))
            async with contextlib.aclosing(self._stream(ctx, level)) as stream:
                async for event in stream:
                    self._put(event)
            self._put(_DONE)
        except asyncio.CancelledError:
            pass  # cancel() queued TurnCancelled already
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            self._put(_Failure(exc))
        finally:
            reset_progress_callback(token)

    def _stream(self, ctx: TurnContext, level: Level) -> AsyncIterator[ReplyEvent]:
        if self._guards is None:
            return level.stream(ctx)

        def start(instruction: str | None) -> AsyncIterator[ReplyEvent]:
            # the corrective instruction goes with the user's message: every level shows that to the model
            return level.stream(ctx if instruction is None else replace(ctx, text=f"{ctx.text}\n\n({instruction})"))

        return guard_stream(start, self._guards, question=ctx.text, history=ctx.history, grounded=level.grounded)

    def _next(self) -> object:
        """The next event; consecutive text deltas of the batch come as one (the caller only adds text up)."""
        item = self._items.popleft()
        if isinstance(item, TextDelta) and self._items and isinstance(self._items[0], TextDelta):
            parts = [item.text]
            while self._items and isinstance(self._items[0], TextDelta) and self._items[0].own == item.own:
                parts.append(self._items.popleft().text)  # type: ignore[union-attr]
            item = TextDelta("".join(parts), own=item.own)
        return item

    async def __aiter__(self) -> AsyncIterator[ReplyEvent]:
        if self._cancelled:
            raise TurnCancelled("stopped")
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._pump())
        # No timeout while the context is built (lookups, lazy model construction, the knowledge base: not model
        # silence), nor for a shared worker, where a turn may wait in the queue.
        try:
            while True:
                if not self._items:
                    self._ready.clear()
                    self._wait_began()
                    try:
                        await self._ready.wait()
                    finally:
                        self._waiting = False
                    if self._timed_out:
                        if not self._items:
                            raise ModelTimeoutError("the model did not answer in time")
                        self._timed_out = False  # an event came as the timer fell due
                item = self._next()
                if self._cancelled:
                    raise TurnCancelled("stopped")
                if isinstance(item, _Started):
                    self._timeout = None if item.shared else self._brain.turn_timeout
                    continue
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise map_model_error(item.error)
                yield item  # type: ignore[misc]
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task])  # never raises: a cancel of this consumer itself still propagates


def map_model_error(exc: BaseException) -> BaseException:
    """Provider faults become ModelCallError with a short reason; our own bugs pass through unchanged."""
    if isinstance(exc, AgentsError):
        return exc
    try:
        import openai
    except ImportError:  # pragma: no cover
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeoutError("the model did not answer in time")
        if isinstance(exc, openai.RateLimitError):
            return ModelCallError("the model is rate-limited (429)")
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ModelCallError("the model rejected our credentials")
        if isinstance(exc, openai.APIStatusError):
            return ModelCallError(f"the model server failed ({exc.status_code})")
        if isinstance(exc, openai.APIConnectionError):
            return ModelCallError("the model server is unreachable")
    # an HTTP library's own errors (the SDK's httpx2, or httpx), looked up, not imported: one never loaded raised
    # nothing, and importing httpx here would load its command-line tool on the event loop
    for name in ("httpx2", "httpx"):
        http = sys.modules.get(name)
        if http is None:
            continue
        if isinstance(exc, http.TimeoutException):
            return ModelTimeoutError("the model did not answer in time")
        if isinstance(exc, http.TransportError):
            return ModelCallError("the connection to the model broke")
    return exc
