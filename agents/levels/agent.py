"""Level 2a: a tool-calling agent (thought -> action -> observation) on LangChain's `create_agent`.

The run itself is in agents/levels/agent_graph.py, imported (in a thread) on the first agent turn: LangChain's agent
runtime (langgraph) is no part of a bot that never runs one, and importing it does not hold up the other chats.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from types import MappingProxyType

from agents.levels.base import Level, TurnContext
from agents.types import ReplyEvent


class AgentLevel(Level):
    name = "agent"
    needs_tools = True
    grounded = True
    description = MappingProxyType({
        "en": "agent: the model calls tools (calculator, web search, knowledge base) step by step",
        "ru": "агент: модель по шагам вызывает инструменты (калькулятор, поиск в сети, база знаний)",
    })

    async def stream(self, ctx: TurnContext) -> AsyncIterator[ReplyEvent]:  # type: ignore[override]
        graph = await asyncio.to_thread(importlib.import_module, "agents.levels.agent_graph")
        async with contextlib.aclosing(graph.run_agent(ctx)) as events:
            async for event in events:
                yield event
