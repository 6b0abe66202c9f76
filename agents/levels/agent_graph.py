"""The agent level's run (agents/levels/agent.py): a tool-calling agent (thought -> action -> observation) on
LangChain's `create_agent`; a module of its own so that LangChain's agent runtime (langgraph), slow to import and
large, loads on the first agent turn rather than at start-up.

What the model sees is trimmed inside a `wrap_model_call` middleware, so the stored history stays whole;
a step limit ends the turn with a short note instead of an error; a tool's own failure (ToolException,
bad arguments, an unknown tool) goes back to the model as an observation, while any other exception in
a tool is our bug and is raised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse, hook_config
from langchain.agents.middleware.tool_error import ToolErrorMiddleware
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import BaseTool, ToolException
from langchain_core.utils.function_calling import convert_to_openai_tool

from agents.levels.base import TurnContext
from agents.messages import estimated_usage, to_messages, trim_history
from agents.types import ReplyEvent, TextDelta, Thought, ToolStep, Usage

log = logging.getLogger(__name__)

STEP_LIMIT_NODE = "AgentStepLimit.before_model"


def build_agent(ctx: TurnContext, trim: TrimToBudget | None = None) -> Any:
    """The compiled agent graph for this turn (cheap: about 2 ms)."""
    system = "\n\n".join(p.strip() for p in (ctx.prompts.system, ctx.prompts.agent_instructions) if p.strip())
    middleware: list[AgentMiddleware[Any, Any, Any]] = [
        AgentStepLimit(ctx.max_steps, ctx.lang),
        trim or TrimToBudget(ctx.token_budget, ctx.tools),
        ToolErrorMiddleware(_tool_failure),
    ]
    return create_agent(ctx.model, list(ctx.tools), system_prompt=system or None, middleware=middleware,
                        name="adaptbot-agent")


async def run_agent(ctx: TurnContext) -> AsyncIterator[ReplyEvent]:
    """The agent's turn as reply events: text deltas, thoughts and tool steps, then its usage."""
    trim = TrimToBudget(ctx.token_budget, ctx.tools)
    agent = build_agent(ctx, trim)
    messages = [*to_messages(ctx.history), HumanMessage(ctx.text)]
    # Each step passes three nodes (limit check, model, tools); the limit middleware stops the loop first,
    # so hitting LangGraph's own recursion limit would be a bug and is left to raise.
    config = {"recursion_limit": 3 * (ctx.max_steps + 2) + 10}
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    answer = _AnswerStream(live=bool(getattr(ctx.model, "streams_final_answer_only", False)))
    prompt_tokens = completion_tokens = model_calls = 0
    async for mode, chunk in agent.astream({"messages": messages}, config=config,
                                           stream_mode=["messages", "updates"]):
        if mode == "messages":
            message, metadata = chunk
            if metadata.get("langgraph_node") == "model" and isinstance(message, AIMessage):
                for text in answer.feed(message):
                    yield TextDelta(text)
            continue
        for node, update in chunk.items():
            produced = update.get("messages", []) if isinstance(update, dict) else []
            if not isinstance(produced, list):
                continue
            for message in produced:
                if node == "model" and isinstance(message, AIMessage):
                    usage = _usage(message, trim.sent_tokens[model_calls] if model_calls < len(trim.sent_tokens) else 0)
                    model_calls += 1
                    prompt_tokens += usage.prompt_tokens
                    completion_tokens += usage.completion_tokens
                    for call in message.tool_calls:
                        calls[call["id"] or ""] = (call["name"], call["args"])
                    for event in answer.finish(message):
                        yield event
                elif node == "tools" and isinstance(message, ToolMessage):
                    name, args = calls.get(message.tool_call_id, (message.name or "?", {}))
                    yield ToolStep(tool=name, input=_render_args(args), output=message.text)
                elif node == STEP_LIMIT_NODE and isinstance(message, AIMessage):
                    yield TextDelta(message.text, own=True)
    if model_calls:
        yield Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def _usage(message: AIMessage, sent_tokens: int) -> Usage:
    """One model call's tokens: as the provider reported them, else estimated as the other levels do."""
    if message.usage_metadata:
        return Usage(prompt_tokens=message.usage_metadata.get("input_tokens", 0),
                     completion_tokens=message.usage_metadata.get("output_tokens", 0))
    calls = json.dumps([[c["name"], c["args"]] for c in message.tool_calls], ensure_ascii=False)
    written = len(message.text) + (len(calls) if message.tool_calls else 0)
    return estimated_usage((), written, extra_prompt_tokens=sent_tokens)


class _AnswerStream:
    """Turns one model message's chunks into answer text; the text of a tool-calling message is a thought.

    Text a model writes before its tool calls ("Let me calculate...") is not the answer, and a tool call may follow
    any amount of text: a message's text is held until the message ends, unless the model decides on a tool call
    before it writes anything (`streams_final_answer_only`, as the local models' step grammar does), so what it
    streams is answer text.
    """

    def __init__(self, live: bool) -> None:
        self._live = live
        self._emitted = ""

    def feed(self, chunk: AIMessage) -> list[str]:
        text = chunk.text if self._live else ""
        if text:
            self._emitted += text
            return [text]
        return []

    def finish(self, message: AIMessage) -> list[ReplyEvent]:
        """The model's message is complete: the rest of a final answer, or a tool-calling message's thought."""
        emitted, self._emitted = self._emitted, ""
        text = message.text
        if message.tool_calls:
            if emitted:  # a model that broke its promise: the text is out already, say so in the log
                log.warning("%s streamed text before a tool call", type(message).__name__)
            return [Thought(text.strip())] if text.strip() and not emitted else []
        rest = text[len(emitted):] if text.startswith(emitted) else ""
        return [TextDelta(rest)] if rest else []


class AgentStepLimit(AgentMiddleware[Any, Any, Any]):
    """Ends the turn with a short note once the model has used `max_steps` rounds of tool calls."""

    NOTE = {
        "en": "I stopped after {n} steps (the step limit) before reaching a final answer. "
              "Ask me to continue, or narrow the question.",
        "ru": "Я остановился после {n} шагов (это предел) и не успел получить окончательный ответ. "
              "Попросите продолжить или сузьте вопрос.",
    }

    def __init__(self, max_steps: int, lang: str = "en") -> None:
        super().__init__()
        self.max_steps, self.lang = max_steps, lang

    @property
    def name(self) -> str:
        return "AgentStepLimit"

    def _check(self, state: Any) -> dict[str, Any] | None:
        messages: list[BaseMessage] = state["messages"]
        start = _last_human(messages)
        steps = sum(1 for m in messages[start + 1:] if isinstance(m, AIMessage) and m.tool_calls)
        if steps < self.max_steps:
            return None
        log.info("agent turn stopped at the step limit (%d)", self.max_steps)
        note = self.NOTE.get(self.lang, self.NOTE["en"]).format(n=self.max_steps)
        return {"jump_to": "end", "messages": [AIMessage(note)]}

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._check(state)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self._check(state)


class TrimToBudget(AgentMiddleware[Any, Any, Any]):
    """Trims the history the model is sent to the token budget; the current turn is always sent whole.

    The budget covers system prompt, tool schemas and messages. Only history before the latest user
    message is dropped (oldest first, starting on a user turn), so a tool call is never separated from
    its result and the question is never lost.
    """

    def __init__(self, budget: int, tools: Sequence[BaseTool]) -> None:
        super().__init__()
        self.budget = budget
        self._tool_tokens = sum(len(json.dumps(convert_to_openai_tool(t))) // 4 for t in tools)
        self.sent_tokens: list[int] = []  # per model call, estimated: for usage when the provider reports none

    def trim(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        messages = list(request.messages)
        start = _last_human(messages)
        if start <= 0:
            return request
        history, current = messages[:start], messages[start:]
        fixed = [request.system_message, *current] if request.system_message else current
        kept = trim_history(history, self.budget - self._tool_tokens, fixed=fixed)
        if len(kept) < len(history):
            log.debug("agent history trimmed from %d to %d messages", len(history), len(kept))
        return request.override(messages=[*kept, *current])

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> ModelResponse[Any]:
        return handler(self._record(self.trim(request)))

    async def awrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
    ) -> ModelResponse[Any]:
        return await handler(self._record(self.trim(request)))

    def _record(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        sent = [request.system_message, *request.messages] if request.system_message else list(request.messages)
        self.sent_tokens.append(count_tokens_approximately(sent) + self._tool_tokens)
        return request


def _tool_failure(exc: Exception, request: ToolCallRequest) -> str | None:
    """A tool's own failure (ToolException) is an observation for the model; anything else propagates."""
    if isinstance(exc, ToolException):
        name = request.tool_call["name"]
        return f"Error: {name} failed: {exc}. Fix the input or try another way."
    return None


def _last_human(messages: Sequence[BaseMessage]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], HumanMessage):
            return i
    return -1



def _render_args(args: dict[str, Any]) -> str:
    if len(args) == 1:
        (value,) = args.values()
        if isinstance(value, str):
            return value
    return json.dumps(args, ensure_ascii=False)
