"""The `local` model on a tiny random GGUF: loading, streaming, the queue, cancellation, tool steps.

The model's answers are gibberish; these tests check the plumbing a user relies on. The tiny model
never emits EOS in free text (see tests/tiny_gguf.py), so plain generations run to max_tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelCallLimitMiddleware
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from agents.backends.llama_chat import ChatLlamaCpp, StepDecoder, render_tool_result
from agents.backends.llama_worker import WorkerClosedError
from agents.backends.local import LocalBackend, finetuned_provider
from agents.errors import ModelCallError, ModelUnavailableError
from agents.types import Queued, ReplyEvent, reset_progress_callback, set_progress_callback
from tests.tiny_gguf import build_tiny_gguf

# One thread: on a tiny model ggml's worker threads cost more than they bring (and the CI box is shared).
LLAMA = {"n_ctx": 4096, "n_threads": 1}


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
async def backend(tiny_gguf: Path):
    backend = LocalBackend(tiny_gguf, max_tokens=48, **LLAMA)
    yield backend
    await backend.aclose()


@pytest.fixture
async def model(backend: LocalBackend) -> ChatLlamaCpp:
    return backend.chat_model()


async def queued(backend: LocalBackend, n: int) -> None:
    """Wait until `n` requests wait for the worker (observable state, not elapsed time)."""
    while backend.worker.waiting < n:
        await asyncio.sleep(0.001)


async def collect(model: Any, messages: Any, **kwargs: Any) -> list[str]:
    return [chunk.content async for chunk in model.astream(messages, **kwargs)]


# ----- load, stream, template --------------------------------------------------------------------------


async def test_model_loads_lazily_and_answers(backend: LocalBackend, model: ChatLlamaCpp) -> None:
    assert not backend.worker.loaded  # nothing loaded before the first question
    reply = await model.ainvoke([HumanMessage("hello")])
    assert backend.worker.loaded
    assert isinstance(reply, AIMessage) and reply.content
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 48
    assert reply.response_metadata["finish_reason"] == "length"


async def test_astream_streams_the_models_own_tokens(tiny_gguf: Path, model: ChatLlamaCpp) -> None:
    chunks = await collect(model, [HumanMessage("tell me a story")], seed=7, max_tokens=300)
    texts = [c for c in chunks if c]
    assert len(texts) >= 2  # text arrives while it is generated, not as one blob at the end

    # The same prompt and seed straight through llama.cpp give the same text.
    from llama_cpp import Llama

    llm = Llama(str(tiny_gguf), verbose=False, **LLAMA)
    try:
        tokens = llm.tokenize(model.last_prompt.encode(), add_bos=False, special=True)
        plain = llm.create_completion(tokens, max_tokens=300, seed=7, temperature=0.7, repeat_penalty=1.1)
    finally:
        llm.close()
    assert "".join(texts) == plain["choices"][0]["text"]


async def test_prompt_is_rendered_with_the_ggufs_chat_template(model: ChatLlamaCpp, tmp_path: Path) -> None:
    await model.ainvoke([SystemMessage("be brief"), HumanMessage("hello")], max_tokens=2)
    assert model.last_prompt == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )

    template = (
        "{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[ASSISTANT] {% endif %}"
    )
    other = LocalBackend(build_tiny_gguf(tmp_path / "other.gguf", chat_template=template), **LLAMA)
    try:
        chat = other.chat_model()
        await chat.ainvoke([SystemMessage("be brief"), HumanMessage("hello")], max_tokens=2)
        assert chat.last_prompt == "[SYSTEM] be brief\n[USER] hello\n[ASSISTANT] "
    finally:
        await other.aclose()


async def test_a_malicious_chat_template_cannot_escape_the_sandbox(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    template = "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    evil = LocalBackend(build_tiny_gguf(tmp_path / "evil.gguf", chat_template=template), **LLAMA)
    try:
        with pytest.raises(ModelCallError, match="chat template"):
            await evil.chat_model().ainvoke([HumanMessage("hello")], max_tokens=2)
    finally:
        await evil.aclose()
    assert not marker.exists()


# ----- cancellation and the queue ----------------------------------------------------------------------


async def test_cancelling_a_generation_frees_the_worker(backend: LocalBackend, model: ChatLlamaCpp) -> None:
    started = asyncio.Event()

    async def long_answer() -> None:
        async for chunk in model.astream([HumanMessage("a long story")], max_tokens=3000):
            if chunk.content:
                started.set()

    task = asyncio.create_task(long_answer())
    await started.wait()
    task.cancel()  # what /stop does
    with pytest.raises(asyncio.CancelledError):
        await task

    reply = await model.ainvoke([HumanMessage("next question")], max_tokens=5)  # the worker is free again
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 5
    cancelled, done = list(backend.worker.history)[-2:]
    assert cancelled.status == "cancelled" and done.status == "done"
    assert cancelled.emitted < 3000  # it did not run to the end...
    assert cancelled.emitted_after_cancel <= 2  # ...and stopped within a token or two


async def test_requests_queue_in_order_and_hear_their_position(backend: LocalBackend, model: ChatLlamaCpp) -> None:
    events: dict[str, list[ReplyEvent]] = {"a": [], "b": [], "c": []}
    finished: list[str] = []
    first_token = asyncio.Event()

    async def chat(name: str, max_tokens: int) -> None:
        token = set_progress_callback(events[name].append)  # what the turn runner does
        try:
            async for chunk in model.astream([HumanMessage(f"question {name}")], max_tokens=max_tokens):
                if chunk.content:
                    first_token.set()
        finally:
            reset_progress_callback(token)
        finished.append(name)

    a = asyncio.create_task(chat("a", 400))
    await first_token.wait()  # a is being generated
    b = asyncio.create_task(chat("b", 20))
    await queued(backend, 1)  # b queues before c
    c = asyncio.create_task(chat("c", 20))
    await asyncio.gather(a, b, c)

    assert finished == ["a", "b", "c"]
    assert events["a"] == []
    assert events["b"] == [Queued(ahead=1)]
    assert events["c"] == [Queued(ahead=2), Queued(ahead=1)]
    assert [r.status for r in list(backend.worker.history)[-3:]] == ["done", "done", "done"]


async def test_a_request_cancelled_while_queued_never_runs(backend: LocalBackend, model: ChatLlamaCpp) -> None:
    prompts: list[str] = []
    model.prompt_hook = prompts.append
    first_token = asyncio.Event()

    async def chat(text: str, max_tokens: int) -> None:
        async for chunk in model.astream([HumanMessage(text)], max_tokens=max_tokens):
            if chunk.content:
                first_token.set()

    running = asyncio.create_task(chat("running question", 300))
    await first_token.wait()
    waiting = asyncio.create_task(chat("queued question", 20))
    await queued(backend, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert backend.worker.waiting == 0
    await running
    await model.ainvoke([HumanMessage("after")], max_tokens=2)

    assert not any("queued question" in p for p in prompts)
    assert [r.status for r in list(backend.worker.history)[-3:]] == ["skipped", "done", "done"]


async def test_event_loop_stays_responsive_while_generating(model: ChatLlamaCpp) -> None:
    worst_lag = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst_lag
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            worst_lag = max(worst_lag, time.perf_counter() - before - 0.005)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    reply = await model.ainvoke([HumanMessage("a long story")], max_tokens=800)
    generation_time = time.perf_counter() - started
    done = True
    await ticking
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 800
    # Generation on the loop would stall it for the whole generation; a generous bound for a noisy box.
    assert worst_lag < generation_time / 5, (worst_lag, generation_time)


async def test_shutdown_cancels_the_running_answer_and_refuses_queued_ones(tiny_gguf: Path) -> None:
    backend = LocalBackend(tiny_gguf, **LLAMA)
    model = backend.chat_model()
    first_token = asyncio.Event()

    async def long_answer() -> None:
        async for chunk in model.astream([HumanMessage("story")], max_tokens=3000):
            if chunk.content:
                first_token.set()

    running = asyncio.create_task(long_answer())
    await first_token.wait()
    later = asyncio.create_task(model.ainvoke([HumanMessage("later")], max_tokens=5))
    await queued(backend, 1)
    await backend.aclose()
    with pytest.raises(WorkerClosedError):
        await later
    await running  # ends early: its generation was cancelled
    assert backend.worker.history[0].status == "cancelled"
    assert not backend.worker.loaded  # the worker thread freed the model on its way out
    with pytest.raises(ModelCallError):
        await model.ainvoke([HumanMessage("after shutdown")])


async def test_a_conversation_longer_than_the_context_fails_clearly(tiny_gguf: Path) -> None:
    backend = LocalBackend(tiny_gguf, n_ctx=256, n_threads=1)
    try:
        model = backend.chat_model()
        with pytest.raises(ModelCallError, match="too long for the local model"):
            await model.ainvoke([HumanMessage("word " * 400)])
        reply = await model.ainvoke([HumanMessage("short")], max_tokens=3)  # the worker carries on
        assert reply.content
    finally:
        await backend.aclose()


def test_invoke_works_from_synchronous_code(tiny_gguf: Path) -> None:
    backend = LocalBackend(tiny_gguf, **LLAMA)
    try:
        reply = backend.chat_model().invoke([HumanMessage("hello")], max_tokens=3)
        assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 3
    finally:
        asyncio.run(backend.aclose())


# ----- long chats: the prompt cache --------------------------------------------------------------------


def chat_turn(chat: int, turn: int) -> str:
    return f"Chat {chat}, turn {turn}: " + " ".join(f"word{(chat * 7 + turn * 3 + i) % 50}" for i in range(60))


async def interleave(model: ChatLlamaCpp, chats: int, turns: int) -> list[tuple[int, int, int]]:
    """Chats take turns on one model, each keeping its history; returns (chat, prompt tokens, evaluated) per call."""
    calls: list[tuple[int, int, int]] = []
    histories: dict[int, list[Any]] = {chat: [] for chat in range(chats)}
    for turn in range(turns):
        for chat in range(chats):
            messages = [*histories[chat], HumanMessage(chat_turn(chat, turn))]
            model.eval_hook = lambda prompt, evaluated, c=chat: calls.append((c, prompt, evaluated))
            reply = await model.ainvoke(messages, max_tokens=8, seed=turn)
            histories[chat] = [*messages, reply]
    return calls


async def test_chats_taking_turns_evaluate_only_their_new_tokens(tiny_gguf: Path) -> None:
    cached, uncached = (LocalBackend(tiny_gguf, max_tokens=8, prompt_cache_mb=mb, **LLAMA) for mb in (64, 0))
    try:
        with_cache = await interleave(cached.chat_model(), chats=3, turns=4)
        without = await interleave(uncached.chat_model(), chats=3, turns=4)
    finally:
        await cached.aclose()
        await uncached.aclose()
    new_turn = max(evaluated for _, _, evaluated in with_cache[:3])  # a first turn: all of it is new
    for (_, prompt, evaluated), (_, same_prompt, evaluated_without) in zip(with_cache[3:], without[3:], strict=True):
        assert prompt == same_prompt  # the same conversation both ways
        assert evaluated <= new_turn + 12  # the new message and the end of the last answer, whatever came between
        assert evaluated_without > prompt - 10  # without the cache: the whole history again (another chat came between)
    assert with_cache[-1][1] > 3 * new_turn  # the history did grow


async def test_a_restored_conversation_continues_exactly_as_if_evaluated_afresh(tiny_gguf: Path) -> None:
    backend = LocalBackend(tiny_gguf, max_tokens=24, **LLAMA)
    fresh = LocalBackend(tiny_gguf, max_tokens=24, prompt_cache_mb=0, **LLAMA)
    try:
        model, evals = backend.chat_model(), []
        first = [HumanMessage(chat_turn(0, 0))]
        first_reply = await model.ainvoke(first, seed=1)
        await model.ainvoke([HumanMessage(chat_turn(1, 0))], seed=1)  # another chat takes the context
        second = [*first, first_reply, HumanMessage(chat_turn(0, 1))]
        model.eval_hook = lambda prompt, evaluated: evals.append((prompt, evaluated))
        continued = await model.ainvoke(second, seed=2)
        assert evals[0][1] < evals[0][0] // 2  # restored, not evaluated again
        assert continued.content == (await fresh.chat_model().ainvoke(second, seed=2)).content
    finally:
        await backend.aclose()
        await fresh.aclose()


async def test_the_prompt_cache_keeps_to_its_memory_cap_dropping_the_least_recently_used(tiny_gguf: Path) -> None:
    backend = LocalBackend(tiny_gguf, max_tokens=8, **LLAMA)
    try:
        model, evals = backend.chat_model(), []
        model.eval_hook = lambda prompt, evaluated: evals.append((prompt, evaluated))
        histories = []
        for chat in range(2):  # measure what one saved conversation takes
            question = [HumanMessage(chat_turn(chat, 0))]
            histories.append([*question, await model.ainvoke(question, seed=0)])
        cache = backend.prompt_cache
        cache.capacity_bytes = 3 * cache.size_bytes + cache.size_bytes // 2  # room for three such conversations
        for chat in range(2, 8):
            question = [HumanMessage(chat_turn(chat, 0))]
            histories.append([*question, await model.ainvoke(question, seed=0)])
        assert len(cache) == 3 and cache.size_bytes <= cache.capacity_bytes

        def next_turn(chat: int) -> list[Any]:
            return [*histories[chat], HumanMessage(chat_turn(chat, 1))]

        await model.ainvoke(next_turn(5), seed=1)  # among the three most recent: restored
        assert evals[-1][1] < evals[-1][0] // 2
        await model.ainvoke(next_turn(0), seed=1)  # the least recently used: dropped, evaluated again
        assert evals[-1][1] > evals[-1][0] - 10
    finally:
        await backend.aclose()


# ----- tool steps under a grammar ----------------------------------------------------------------------


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "4"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def weather(city: str, unit: Literal["c", "f"] = "c", days: int | None = None) -> str:
    """Weather forecast for a city."""
    return f"sunny in {city}"


@tool
def now() -> str:
    """The current time."""
    return "12:00"


@tool
def convert(amount: float, currency: Literal["usd", "eur", "rub"], round_result: bool) -> str:
    """Convert money between currencies."""
    return str(amount)


TOOLSETS: list[list[BaseTool]] = [
    [calculator, add, weather],
    [now, convert],
    [calculator],
    [weather, convert, now, add],
]
PROMPTS = ["What is 2+2?", "Погода в Москве?", "hi", "Convert 10 usd to eur and add 3", "What time is it?"]


async def test_100_constrained_steps_all_parse_into_a_valid_call_or_answer(model: ChatLlamaCpp) -> None:
    kinds = {"tool": 0, "final": 0}
    for i in range(100):
        tools = TOOLSETS[i % len(TOOLSETS)]
        tool_choice = "any" if i % 10 == 9 else None  # sometimes a call is required
        bound = model.bind_tools(tools, tool_choice=tool_choice)
        reply = await bound.ainvoke([HumanMessage(PROMPTS[i % len(PROMPTS)])], seed=i, max_tokens=512)
        assert isinstance(reply, AIMessage)
        if reply.tool_calls:
            assert len(reply.tool_calls) == 1 and not reply.invalid_tool_calls
            call = reply.tool_calls[0]
            offered = {t.name: t for t in tools}
            assert call["name"] in offered, (i, call)
            schema = convert_to_openai_tool(offered[call["name"]])["function"]["parameters"]
            jsonschema.validate(call["args"], schema)
            result = await offered[call["name"]].ainvoke(call)  # the tool accepts its arguments
            assert isinstance(result, ToolMessage) and result.status == "success"
            kinds["tool"] += 1
        else:
            assert tool_choice is None, f"step {i}: a final answer where a call was required"
            assert isinstance(reply.content, str)
            assert reply.response_metadata["finish_reason"] == "stop"  # the JSON closed, nothing cut off
            kinds["final"] += 1
    assert kinds["tool"] and kinds["final"], kinds  # both kinds of step were exercised


class _ToolFirst(AgentMiddleware):
    """Require a tool call on the first step (a random model would otherwise often answer at once)."""

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            request = request.override(tool_choice="any")
        return await handler(request)


async def test_create_agent_sees_the_tool_result_in_the_next_prompt(model: ChatLlamaCpp) -> None:
    calls: list[dict[str, Any]] = []

    @tool
    def lookup(query: str) -> str:
        """Look something up in the handbook."""
        calls.append({"query": query})
        return "TOOL-OUTPUT-7f3a: twenty vacation days"

    prompts: list[str] = []
    model.prompt_hook = prompts.append
    model.max_tokens, model.seed = 512, 3
    agent = create_agent(
        model,
        [lookup],
        system_prompt="You answer questions about the handbook.",
        middleware=[_ToolFirst(), ModelCallLimitMiddleware(run_limit=2, exit_behavior="end")],
    )
    streamed = []
    async for message, _meta in agent.astream(
        {"messages": [HumanMessage("How many vacation days?")]}, stream_mode="messages"
    ):
        streamed.append(message)

    assert len(prompts) == 2 and calls  # two model steps; the first one called the tool
    assert "TOOL-OUTPUT-7f3a: twenty vacation days" not in prompts[0]
    second = prompts[1]
    assert render_tool_result("lookup", "TOOL-OUTPUT-7f3a: twenty vacation days") in second  # wrapped as data
    assert json.dumps({"tool": "lookup", "arguments": calls[0]}, ensure_ascii=False) in second
    assert "You answer questions about the handbook." in second and '"final_answer"' in second
    assert any(isinstance(m, ToolMessage) for m in streamed)


async def test_an_agent_turn_waiting_for_the_model_hears_its_place(model: ChatLlamaCpp) -> None:
    events: list[ReplyEvent] = []
    first_token = asyncio.Event()

    async def other_chat() -> None:
        async for chunk in model.astream([HumanMessage("a long story")], max_tokens=400):
            if chunk.content:
                first_token.set()

    async def agent_turn() -> None:
        token = set_progress_callback(events.append)  # the turn runner's callback, seen through LangGraph
        try:
            agent = create_agent(model, [now], middleware=[ModelCallLimitMiddleware(run_limit=1, exit_behavior="end")])
            await agent.ainvoke({"messages": [HumanMessage("what time is it?")]})
        finally:
            reset_progress_callback(token)

    busy = asyncio.create_task(other_chat())
    await first_token.wait()
    await agent_turn()
    await busy
    assert Queued(ahead=1) in events


def test_step_decoder_streams_a_final_answer_as_it_grows() -> None:
    decoder = StepDecoder()
    pieces = [r'{ "final', r'_answer": "Hel', "lo \\", r"n\u04", "1f", r"и\"q\"", '"}']
    streamed = "".join(decoder.feed(p) for p in pieces)
    rest, call = decoder.result([])
    assert call is None and streamed + rest == 'Hello \nПи"q"'
    assert rest == ""  # everything was streamed before the step ended


# ----- errors and the fine-tuned provider --------------------------------------------------------------


async def test_missing_or_corrupt_file_gives_one_clear_line(tmp_path: Path, tiny_gguf: Path) -> None:
    path = tmp_path / "nope.gguf"
    backend = LocalBackend(path, **LLAMA)
    try:
        with pytest.raises(ModelUnavailableError) as missing:
            await backend.chat_model().ainvoke([HumanMessage("hi")])
        assert "\n" not in str(missing.value) and str(path) in str(missing.value)
        assert "LOCAL_MODEL_PATH" in str(missing.value)

        path.write_bytes(b"GGUF" + b"\x00garbage" * 100)
        with pytest.raises(ModelUnavailableError) as corrupt:
            await backend.chat_model().ainvoke([HumanMessage("hi")])
        assert "\n" not in str(corrupt.value) and "LOCAL_MODEL_PATH" in str(corrupt.value)

        path.write_bytes(tiny_gguf.read_bytes())  # fixed on disk: the next question works, no restart
        reply = await backend.chat_model().ainvoke([HumanMessage("hi")], max_tokens=3)
        assert reply.content
    finally:
        await backend.aclose()


async def test_default_model_without_network_says_to_set_local_model_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    closed_port = "http://127.0.0.1:9"
    monkeypatch.setenv("HF_ENDPOINT", closed_port)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", closed_port)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    backend = LocalBackend(None, repo="someone/some-model-GGUF", filename="model.gguf", cache_dir=tmp_path, **LLAMA)
    try:
        with pytest.raises(ModelUnavailableError) as error:
            await backend.chat_model().ainvoke([HumanMessage("hi")])
    finally:
        await backend.aclose()
    message = str(error.value)
    assert "\n" not in message and "LOCAL_MODEL_PATH" in message and "someone/some-model-GGUF" in message


async def test_finetuned_provider_picks_up_new_models(
    tmp_path: Path, tiny_gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = finetuned_provider(tmp_path, max_tokens=4, **LLAMA)
    assert provider() == {}

    folder = tmp_path / "finetuned"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    (folder / "lost.json").write_text(json.dumps({"name": "lost", "gguf": str(tmp_path / "gone.gguf")}))
    manifest = {
        "name": "support",
        "gguf": str(tiny_gguf),
        "files": {"f16": str(tiny_gguf)},
        "base": "tiny-llama",
        "created": "2025-01-01T00:00:00Z",
    }
    with caplog.at_level(logging.WARNING):
        (folder / "support.json").write_text(json.dumps(manifest), encoding="utf-8")
        found = provider()
    assert list(found) == ["finetuned:support"]
    assert "broken.json" in caplog.text and "gone.gguf" in caplog.text

    backend = found["finetuned:support"]
    assert backend.name == "finetuned:support" and "tiny-llama" in backend.description["en"]
    assert provider()["finetuned:support"] is backend  # the same object: the model loads once
    try:
        reply = await backend.chat_model().ainvoke([HumanMessage("hi")])
        assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 4
    finally:
        await provider.aclose()  # type: ignore[attr-defined]
