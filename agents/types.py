"""Plain data that crosses the boundary between `agents/` and its callers (bot, terminal chat).

No LangChain or aiogram types here: a caller sees turns in, reply events out.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message of a chat's history."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the final answer, in order; `own`: written by the level itself (a step-limit note), not by the
    model, so the guards do not judge it."""

    text: str
    own: bool = False


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One agent step: a tool was called with `input` and returned `output`."""

    tool: str
    input: str
    output: str


@dataclass(frozen=True, slots=True)
class Thought:
    """What the model wrote before calling a tool ("Let me look that up"): a step, never part of the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Source:
    """A cited source of a RAG answer (`[1] handbook.pdf, p. 3`)."""

    index: int
    name: str
    page: int | None = None
    date: str | None = None


@dataclass(frozen=True, slots=True)
class Sources:
    """The sources the answer was built from; comes after the last TextDelta."""

    items: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class Passages:
    """The texts the answer was given as reference data (retrieved passages): what its numbers may come from."""

    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Queued:
    """The turn waits for a shared resource (the local model); `ahead` requests are before it."""

    ahead: int


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the turn consumed (approximate where the backend does not report them)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class GuardAction:
    """A guard acted on the answer streamed so far (see agents/guards.py).

    `loops`/`cut`: keep the first `keep` characters; the turn ends there and is incomplete.
    `language`/`restart`: forget the answer so far (text and sources); it is generated again.
    `language`/`kept`: the answer is still not in the expected language `lang` (the better of two tries is kept).
    `numbers`/`marked`: the figures `numbers` no source states end at the offsets `marks` of the answer.
    """

    guard: Literal["loops", "language", "numbers"]
    action: Literal["cut", "restart", "kept", "marked"]
    keep: int = 0
    lang: str = ""
    numbers: tuple[str, ...] = ()
    marks: tuple[int, ...] = ()


ReplyEvent = TextDelta | ToolStep | Thought | Sources | Passages | Queued | Usage | GuardAction


@dataclass(slots=True)
class PromptSet:
    """What the `prompt` level adds: persona/system prompt, few-shot pairs, chain-of-thought instruction."""

    system: str
    chain_of_thought: str = ""
    few_shot: list[tuple[str, str]] = field(default_factory=list)
    rag_instructions: str = ""
    agent_instructions: str = ""


# Out-of-band progress (e.g. a place in the local model's queue). The turn runner sets a callback
# here; backends call `notify(Queued(n))` while they wait, and the event reaches the user's stream.
_progress: ContextVar[Callable[[ReplyEvent], None] | None] = ContextVar("adaptbot_progress", default=None)


def notify(event: ReplyEvent) -> None:
    """Report progress of the current turn to whoever runs it (no-op outside a turn)."""
    callback = _progress.get()
    if callback is not None:
        callback(event)


def set_progress_callback(callback: Callable[[ReplyEvent], None] | None) -> object:
    """Install the progress callback for the current context; returns a token for `reset_progress_callback`."""
    return _progress.set(callback)


def reset_progress_callback(token: object) -> None:
    _progress.reset(token)  # type: ignore[arg-type]
