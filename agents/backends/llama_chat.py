"""`ChatLlamaCpp`: a LangChain chat model over a `LlamaWorker`, with tool calls under a grammar.

Prompts are rendered here with the chat template from the GGUF metadata (sandboxed Jinja, as llama-cpp-python
does), so tool calls and tool results can be shown to the model as plain turns: llama-cpp-python's
`chatml-function-calling` format drops tool results from the prompt.

With tools bound, each step is generated under a grammar built from a JSON schema that admits only
`{"tool": <an offered tool>, "arguments": <its arguments schema>}` or `{"final_answer": "<text>"}`, so a
small model cannot produce a step that does not parse. A final answer still streams token by token.
The parts: `llama_grammar.py` (step schema and grammar), `llama_template.py` (prompt rendering),
`llama_decoder.py` (the streaming step decoder); this module is the LangChain model over them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from agents.backends.llama_decoder import StepDecoder
from agents.backends.llama_grammar import (
    ToolSpec,
    cached_step_grammar,
    check_grammar,
    select_tools,
    step_grammar,
    step_schema,
    tool_instructions,
)
from agents.backends.llama_template import (
    TOOL_RESULT_CLOSE,
    TOOL_RESULT_OPEN,
    ChatTurn,
    chat_formatter,
    fallback_template,
    messages_to_turns,
    render_prompt,
    render_tool_result,
)
from agents.backends.llama_worker import LlamaWorker
from agents.backends.prompt_cache import PromptCache, evaluated_tokens, safe_reuse
from agents.errors import ModelCallError

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

# the names tests and callers import from here
__all__ = ["TOOL_RESULT_CLOSE", "TOOL_RESULT_OPEN", "ChatLlamaCpp", "ChatTurn", "StepDecoder",
           "ToolSpec", "chat_formatter",
           "fallback_template", "messages_to_turns", "render_prompt", "render_tool_result", "step_grammar",
           "step_schema", "tool_instructions"]


# ----- the chat model ----------------------------------------------------------------------------------


class ChatLlamaCpp(BaseChatModel):
    """A LangChain chat model served by a `LlamaWorker` (one llama.cpp model shared by all chats)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    # A step's grammar decides between a tool call and a final answer before any text streams: all text is answer.
    streams_final_answer_only: ClassVar[bool] = True

    worker: LlamaWorker = Field(exclude=True)
    model_name: str = "local"
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None
    # Called on the worker thread with every rendered prompt (diagnostics, tests).
    prompt_hook: Callable[[str], None] | None = Field(default=None, exclude=True)
    # The model's saved conversation prefixes (shared by every chat model of one worker); None: no cache.
    prompt_cache: PromptCache | None = Field(default=None, exclude=True)
    # Called on the worker thread once per call with (prompt tokens, prompt tokens llama.cpp evaluated).
    eval_hook: Callable[[int, int], None] | None = Field(default=None, exclude=True)

    _last_prompt: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
        }

    @property
    def last_prompt(self) -> str | None:
        """The prompt text of the most recent call, as rendered by the model's chat template."""
        return self._last_prompt

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools: steps are then generated under a grammar (one tool call or a final answer)."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        kwargs.pop("parallel_tool_calls", None)  # one call per step, always
        kwargs.pop("strict", None)  # the grammar is always strict
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ---- generation ----

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "max_tokens": int(kwargs.get("max_tokens", self.max_tokens)),
            "temperature": float(kwargs.get("temperature", self.temperature)),
            "top_p": float(kwargs.get("top_p", self.top_p)),
            "top_k": int(kwargs.get("top_k", self.top_k)),
            "min_p": float(kwargs.get("min_p", self.min_p)),
            "repeat_penalty": float(kwargs.get("repeat_penalty", self.repeat_penalty)),
            "frequency_penalty": float(kwargs.get("frequency_penalty", self.frequency_penalty)),
            "presence_penalty": float(kwargs.get("presence_penalty", self.presence_penalty)),
            "seed": kwargs.get("seed", self.seed),
            "stop": [*(self.stop or []), *(stop or [])],
        }

    def _job(
        self, turns: list[ChatTurn], sampling: dict[str, Any], grammar: str | None
    ) -> Callable[[Llama, Callable[[Any], None], threading.Event], None]:
        """The work done on the worker thread for one call: render, tokenize, generate, emit text."""

        def job(llm: Llama, emit: Callable[[Any], None], cancelled: threading.Event) -> None:
            from llama_cpp import LlamaGrammar, StoppingCriteriaList

            prompt, template_stop = render_prompt(llm, turns)
            self._last_prompt = prompt
            if self.prompt_hook is not None:
                self.prompt_hook(prompt)
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) >= llm.n_ctx():
                raise ModelCallError(
                    f"the conversation is too long for the local model ({len(tokens)} tokens, "
                    f"context {llm.n_ctx()}); start a new chat or raise LOCAL_N_CTX"
                )
            if self.prompt_cache is not None:
                self.prompt_cache.prepare(llm, tokens)
            reused = safe_reuse(llm, tokens)
            evaluated_before = evaluated_tokens(llm)
            sampled = 0  # tokens sampled, counted by the stopping criterion

            def stop_when_cancelled(_ids: Any, _logits: Any) -> bool:
                nonlocal sampled
                sampled += 1  # called after every sampled token: a stop within one token
                if sampled == 1 and self.eval_hook is not None:  # the prompt is evaluated, no sampled token yet
                    self.eval_hook(len(tokens), evaluated_tokens(llm) - evaluated_before)
                return cancelled.is_set()

            if grammar:
                check_grammar(llm, grammar)
            params = dict(sampling)
            # Under a grammar the grammar decides where the step ends; a stop string could cut the JSON.
            params["stop"] = [] if grammar else [*template_stop, *params["stop"]]
            stream = llm.create_completion(
                tokens,
                stream=True,
                grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
                stopping_criteria=StoppingCriteriaList([stop_when_cancelled]),
                **params,
            )
            finish_reason = None
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        emit(("text", choice["text"]))
                    finish_reason = choice["finish_reason"] or finish_reason
                    if cancelled.is_set():
                        break
            finally:
                stream.close()
            # The criterion also runs once after the last token: the count is approximate, like the usage.
            info = {
                "finish_reason": finish_reason,
                "prompt_tokens": len(tokens),
                "cached_tokens": reused,
                "completion_tokens": max(sampled - 1, 0),
            }
            emit(("end", info))

        return job

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        specs = [ToolSpec.from_openai(tool) for tool in kwargs.get("tools") or []]
        offered, allow_final = select_tools(specs, kwargs.get("tool_choice")) if specs else ([], True)
        sampling = self._sampling(stop, kwargs)
        if not offered:
            job = self._job(messages_to_turns(messages), sampling, None)
            async for batch in self.worker.run(job):
                if text := "".join(value for kind, value in batch if kind == "text"):
                    yield ChatGenerationChunk(message=AIMessageChunk(content=text))
                for kind, value in batch:
                    if kind == "end":
                        yield self._last_chunk(value)
            return

        instructions = tool_instructions(offered, allow_final=allow_final)
        grammar = await asyncio.to_thread(
            cached_step_grammar, json.dumps([dataclasses.asdict(t) for t in offered]), allow_final
        )
        job = self._job(messages_to_turns(messages, instructions), sampling, grammar)
        decoder = StepDecoder()
        info: dict[str, Any] = {}
        async for batch in self.worker.run(job):
            if delta := decoder.feed("".join(value for kind, value in batch if kind == "text")):
                yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
            info = next((value for kind, value in batch if kind == "end"), info)
        rest, call = decoder.result(offered)
        if call is None:
            if rest:
                yield ChatGenerationChunk(message=AIMessageChunk(content=rest))
            yield self._last_chunk(info)
        else:
            yield self._last_chunk(info, call)

    def _last_chunk(self, info: dict[str, Any], call: dict[str, Any] | None = None) -> ChatGenerationChunk:
        """The closing chunk: usage, finish reason and, for a tool step, the tool call."""
        prompt_tokens, completion_tokens = info.get("prompt_tokens", 0), info.get("completion_tokens", 0)
        usage = UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            input_token_details={"cache_read": info.get("cached_tokens", 0)},
        )
        calls = (
            [
                tool_call_chunk(
                    name=call["name"],
                    args=json.dumps(call["args"], ensure_ascii=False),
                    id=f"call_{uuid.uuid4().hex[:24]}",
                    index=0,
                )
            ]
            if call is not None
            else []
        )
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=calls,
                usage_metadata=usage,
                response_metadata={"finish_reason": info.get("finish_reason"), "model_name": self.model_name},
                chunk_position="last",
            ),
            generation_info={"finish_reason": info.get("finish_reason")},
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        from langchain_core.language_models.chat_models import agenerate_from_stream

        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Blocking call for synchronous callers (scripts); never from inside the event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._agenerate(messages, stop, None, **kwargs))
        raise RuntimeError("ChatLlamaCpp.invoke() would block the event loop; use ainvoke()/astream()")
