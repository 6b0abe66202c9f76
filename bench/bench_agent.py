"""Overhead of one agent turn (LangGraph loop, middleware, event stream) over calling the model directly.

    .venv/bin/python bench/bench_agent.py [--turns 50]

The model answers instantly, so what is left is the agent's own cost. Measured in the same run:
  1. in-process instant model, plain answer:   agent turn       vs one direct `ainvoke`
  2. in-process instant model, one tool round: agent turn       vs two direct `ainvoke` + the tool itself
  3. real ChatOpenAI + scripted server on loopback, streamed:   agent turn vs one direct `astream`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agents.backends.base import Backend
from agents.levels.agent import AgentLevel
from agents.levels.base import TurnContext
from agents.tools.calculator import calculate, make_calculator_tool
from agents.types import PromptSet

QUESTION = "What is 15% of 2400?"
ANSWER = "15% of 2400 is 360."


class InstantModel(BaseChatModel):
    """Answers at once: a calculator call for a fresh question when `use_tool`, else the answer."""

    use_tool: bool = False

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        if self.use_tool and not isinstance(messages[-1], ToolMessage):
            return AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "15% of 2400"},
                                              "id": "call_1", "type": "tool_call"}])
        return AIMessage(ANSWER)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return self._generate(messages)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> InstantModel:  # type: ignore[override]
        return self


class _Backend(Backend):
    name = "bench"
    description = MappingProxyType({"en": "bench"})

    def __init__(self, model: BaseChatModel) -> None:
        self._model = model

    def chat_model(self) -> BaseChatModel:
        return self._model


def context(model: BaseChatModel) -> TurnContext:
    return TurnContext(history=(), text=QUESTION, backend=_Backend(model), model=model,
                       prompts=PromptSet(system="You are a bench.", agent_instructions="Use tools."),
                       token_budget=3000, tools=[make_calculator_tool()], max_steps=6)


async def median_ms(fn: Callable[[], Awaitable[object]], turns: int) -> float:
    for _ in range(3):  # warm-up: imports, first graph compile, connection pool
        await fn()
    times = []
    for _ in range(turns):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


async def agent_turn(ctx: TurnContext) -> None:
    async for _ in AgentLevel().stream(ctx):
        pass


def report(label: str, agent_ms: float, direct_ms: float) -> None:
    print(f"{label}: agent turn {agent_ms:7.2f} ms | direct {direct_ms:7.2f} ms | "
          f"ratio {agent_ms / direct_ms:6.1f}x | overhead {agent_ms - direct_ms:6.2f} ms")


async def main(turns: int) -> None:
    system, question = SystemMessage("You are a bench."), HumanMessage(QUESTION)

    plain = InstantModel()
    direct = await median_ms(lambda: plain.ainvoke([system, question]), turns)
    ctx = context(plain)  # built once: the tools are made by the caller, not per turn by the level
    agent = await median_ms(lambda: agent_turn(ctx), turns)
    report("1. instant model, plain answer  ", agent, direct)

    tooling = InstantModel(use_tool=True)

    async def direct_round() -> None:
        first = await tooling.ainvoke([system, question])
        result = calculate(first.tool_calls[0]["args"]["expression"])  # type: ignore[union-attr]
        await tooling.ainvoke([system, question, first, ToolMessage(result, tool_call_id="call_1")])

    direct = await median_ms(direct_round, turns)
    ctx = context(tooling)
    agent = await median_ms(lambda: agent_turn(ctx), turns)
    report("2. instant model, one tool round", agent, direct)

    from langchain_openai import ChatOpenAI

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # noqa: ASYNC240 - the repo root, for tests.fakes
    from tests.fakes.openai_server import ScriptedOpenAI

    async with ScriptedOpenAI(default=lambda body: ANSWER) as server:
        model = ChatOpenAI(model="scripted", base_url=server.base_url, api_key="bench",  # type: ignore[arg-type]
                           timeout=10, max_retries=0, streaming=True, stream_usage=True)

        async def direct_stream() -> None:
            async for _ in model.astream([system, question]):
                pass

        direct = await median_ms(direct_stream, turns)
        ctx = context(model)
        agent = await median_ms(lambda: agent_turn(ctx), turns)
        report("3. ChatOpenAI on loopback, plain", agent, direct)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=50)
    asyncio.run(main(parser.parse_args().turns))
