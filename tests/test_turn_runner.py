"""The turn runner (`Brain.start_turn`): /stop at any moment of a turn ends it at once.

The model is the real ChatOpenAI against the scripted server; the knowledge base is a slow fake whose every call
waits on a gate, so a /stop can land while the turn awaits it. The backend is a shared worker (like `local` and
`finetuned`), where the runner has no timeout to fall back on: a lost cancel would wait for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from agents.backends.base import Backend, ModelRegistry
from agents.errors import ModelTimeoutError
from agents.levels import default_levels
from agents.runtime import Brain, TurnCancelled, TurnRun
from agents.tools.calculator import make_calculator_tool
from agents.types import ReplyEvent, TextDelta
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, Text, ToolCalls
from tests.fakes.telegram_server import FakeTelegram
from tests.waiting import until

# Far beyond any turn here; only reached when a cancel is lost (the test then fails instead of hanging).
LOST = 30.0


@dataclass
class Hit:
    text: str
    source: str = "handbook.txt"
    page: int | None = None
    date: str | None = None
    score: float = 1.0


class SlowKnowledge:
    """A knowledge base whose calls wait on `gate`; `reached` is set when a call starts waiting."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.reached = asyncio.Event()
        self.calls: list[str] = []
        self.cancelled: list[str] = []

    async def _wait(self, name: str) -> None:
        self.calls.append(name)
        self.reached.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise

    async def is_empty(self) -> bool:
        await self._wait("is_empty")
        return False

    async def search(self, query: str, k: int) -> Sequence[Hit]:
        await self._wait("search")
        return [Hit("Vacation is 28 days a year.")]


class SharedCloud(Backend):
    """The cloud model served as a shared worker would be: the runner sets no timeout on its silence."""

    name = "local"
    description = MappingProxyType({"en": "scripted, shared"})
    shared_worker = True

    def __init__(self, server: ScriptedOpenAI) -> None:
        self._model = ChatOpenAI(model="scripted", base_url=server.base_url, api_key="test",  # type: ignore[arg-type]
                                 timeout=LOST * 2, max_retries=0, streaming=True, stream_usage=True)

    def chat_model(self) -> BaseChatModel:
        return self._model


def brain(llm: ScriptedOpenAI, knowledge: SlowKnowledge) -> Brain:
    models = ModelRegistry()
    models.register(SharedCloud(llm))
    return Brain(default_levels(), models, tool_factories=[make_calculator_tool], knowledge=knowledge)


@dataclass
class StopPoint:
    level: str
    reply: Callable[[], Text]
    reached: Callable[[TurnRun, SlowKnowledge, ScriptedOpenAI, list[ReplyEvent]], Awaitable[None]] | None


async def _first_text(run: TurnRun, kb: SlowKnowledge, llm: ScriptedOpenAI, events: list[ReplyEvent]) -> None:
    kb.gate.set()
    await until(lambda: any(isinstance(e, TextDelta) for e in events))


async def _model_silent(run: TurnRun, kb: SlowKnowledge, llm: ScriptedOpenAI, events: list[ReplyEvent]) -> None:
    kb.gate.set()
    await until(lambda: len(llm.requests) == 1)


async def _kb_waiting(run: TurnRun, kb: SlowKnowledge, llm: ScriptedOpenAI, events: list[ReplyEvent]) -> None:
    await kb.reached.wait()


POINTS = [
    pytest.param(StopPoint("agent", lambda: Text("never sent"), None), id="before-the-turn-starts"),
    pytest.param(StopPoint("agent", lambda: Text("never sent"), _kb_waiting), id="agent-while-the-kb-opens"),
    pytest.param(StopPoint("rag", lambda: Text("never sent"), _kb_waiting), id="rag-while-the-kb-searches"),
    pytest.param(StopPoint("rag", lambda: Text("answer", gate=asyncio.Event()), _model_silent),
                 id="while-the-model-is-silent"),
    pytest.param(StopPoint("zero-shot", lambda: Text("word " * 400, chunk_size=5, chunk_delay=0.01), _first_text),
                 id="mid-answer"),
]


@pytest.mark.parametrize("point", POINTS)
async def test_stop_at_any_moment_ends_the_turn_at_once(llm: ScriptedOpenAI, point: StopPoint) -> None:
    kb = SlowKnowledge()
    reply = point.reply()
    llm.enqueue(reply)
    run = brain(llm, kb).start_turn(level=point.level, model="local", history=[], text="How long is vacation?")
    events: list[ReplyEvent] = []
    seen_after_stop: list[ReplyEvent] = []
    stopped = False

    async def consume() -> None:
        async for event in run:
            (seen_after_stop if stopped else events).append(event)

    consumer = asyncio.create_task(consume())
    if point.reached is not None:
        await point.reached(run, kb, llm, events)
    stopped = True
    run.cancel()
    with pytest.raises(TurnCancelled):
        await asyncio.wait_for(consumer, LOST)
    assert seen_after_stop == []  # nothing reaches the user after /stop
    if kb.calls and not kb.gate.is_set():
        assert kb.cancelled == kb.calls  # the knowledge base call itself was abandoned, not left running
    if reply.gate is not None:
        reply.gate.set()  # let the scripted server finish its stalled answer


async def test_stop_while_the_knowledge_base_opens_answers_stopped_through_the_bot(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="agent")
    kb = SlowKnowledge()
    bot.app.services.brain.knowledge = kb  # a knowledge base that takes its time to open
    telegram.user_says(3, "How long is vacation?")
    await kb.reached.wait()
    telegram.user_says(3, "/stop")
    await telegram.wait_for(lambda: telegram.texts(3))
    assert telegram.texts(3) == ["⏹ Stopped."]
    assert kb.cancelled == ["is_empty"] and llm.requests == []
    kb.gate.set()
    telegram.user_says(3, "and now?")  # the chat is free again
    await telegram.wait_for(lambda: len(telegram.texts(3)) == 2)
    assert telegram.texts(3)[1] == "echo: and now?"


class DownKnowledge:
    """A knowledge base that has documents but whose searches fail (the chroma server went away mid-way)."""

    async def is_empty(self) -> bool:
        return False

    async def search(self, query: str, k: int) -> Sequence[Hit]:
        raise ConnectionError("Could not connect to a Chroma server at 10.1.2.3:8000")


async def test_a_search_that_fails_mid_turn_is_an_observation_without_internals(llm: ScriptedOpenAI) -> None:
    llm.enqueue(ToolCalls(("knowledge_search", {"query": "vacation"})), "I could not check the handbook.")
    models = ModelRegistry()
    models.register(SharedCloud(llm))
    run = Brain(default_levels(), models, knowledge=DownKnowledge()).start_turn(
        level="agent", model="local", history=[], text="How long is vacation?")
    events = [event async for event in run]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "I could not check the handbook."
    observation = next(m for m in llm.requests[1]["messages"] if m["role"] == "tool")["content"]
    assert "knowledge base is unavailable" in observation and "10.1.2.3" not in observation


async def test_a_level_that_declares_needs_tools_gets_them_whatever_its_name(llm: ScriptedOpenAI) -> None:
    from agents.levels.base import Level, LevelRegistry, TurnContext

    seen: dict[str, list[str]] = {}

    class ToolLister(Level):
        description = MappingProxyType({"en": "lists the tools it was given"})

        def __init__(self, name: str, needs_tools: bool) -> None:
            self.name, self.needs_tools = name, needs_tools  # type: ignore[misc]

        async def stream(self, ctx: TurnContext):  # type: ignore[override]
            seen[self.name] = [tool.name for tool in ctx.tools]
            yield TextDelta("ok")

    models = ModelRegistry()
    models.register(SharedCloud(llm))
    brain = Brain(LevelRegistry([ToolLister("planner", True), ToolLister("plain", False)]), models,
                  tool_factories=[make_calculator_tool])
    for level in ("planner", "plain"):
        assert [e async for e in brain.start_turn(level=level, model="local", history=[], text="hi")]
    assert seen == {"planner": ["calculator"], "plain": []}


class Paced(Backend):
    """A model of the turn runner's own timing (no client timeout behind it): not a shared worker."""

    name = "paced"
    description = MappingProxyType({"en": "paced"})

    def __init__(self) -> None:  # the paced levels below never call it
        self._model = ChatOpenAI(model="unused", base_url="http://127.0.0.1:9", api_key="test")  # type: ignore[arg-type]

    def chat_model(self) -> BaseChatModel:
        return self._model


def paced_brain(stream: Callable[[], object], timeout: float) -> Brain:
    from agents.levels.base import Level, LevelRegistry, TurnContext

    class PacedLevel(Level):
        name = "paced"
        description = MappingProxyType({"en": "yields as told"})

        async def stream(self, ctx: TurnContext):  # type: ignore[override]
            async for event in stream():  # type: ignore[attr-defined]
                yield event

    models = ModelRegistry()
    models.register(Paced())
    return Brain(LevelRegistry([PacedLevel()]), models, turn_timeout=timeout)


async def test_a_model_silent_for_longer_than_the_turn_timeout_fails_the_turn() -> None:
    async def stalls():
        yield TextDelta("Hello")
        await asyncio.sleep(LOST)

    run = paced_brain(stalls, timeout=0.3).start_turn(level="paced", model="paced", history=[], text="hi")
    events: list[ReplyEvent] = []
    started = asyncio.get_running_loop().time()
    with pytest.raises(ModelTimeoutError):
        async for event in run:
            events.append(event)
    assert events == [TextDelta("Hello")]
    assert asyncio.get_running_loop().time() - started < 5


async def test_the_turn_timeout_counts_the_models_silence_not_the_time_the_consumer_takes() -> None:
    """The model is silent for 0.5 s, longer than the timeout; but the consumer was busy for 0.4 s of it, and
    waited only 0.1 s: no timeout (a timer from the model's last event would have fired)."""
    async def pauses():
        for i in range(3):
            yield TextDelta(f"{i} ")
            await asyncio.sleep(0.5)

    run = paced_brain(pauses, timeout=0.3).start_turn(level="paced", model="paced", history=[], text="hi")
    text = []
    async for event in run:
        assert isinstance(event, TextDelta)
        text.append(event.text)
        await asyncio.sleep(0.4)  # the consumer is slow (a Telegram send waiting out flood control, say)
    assert "".join(text) == "0 1 2 "
