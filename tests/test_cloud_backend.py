"""The cloud backend sends the model exactly the request LangChain built: the bot's fast streamed path, LangChain's
own streamed and non-streamed paths, tools, and the parameters a team adds for its server (`extra_body`)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from agents.backends.cloud import CloudBackend
from agents.messages import stream_text
from agents.tools.calculator import make_calculator_tool
from agents.types import TextDelta, Usage
from tests.fakes.openai_server import ScriptedOpenAI, ToolCalls

HISTORY = [SystemMessage("Answer briefly."), HumanMessage("Привет! 2+2?"), AIMessage("4"),
           HumanMessage("And a quote: \"x\" \\ y\n\ttab")]


def backend(llm: ScriptedOpenAI, **extra: Any) -> Any:
    model = CloudBackend(model="scripted-1", api_key=SecretStr("sk-test-123456"), base_url=llm.base_url,
                         timeout=10, max_retries=0, temperature=0.2).chat_model()
    return model.model_copy(update=extra) if extra else model


def expected(model: Any, *, stream: bool, **more: Any) -> dict[str, Any]:
    """The body LangChain means to send: its payload, with the SDK's call options (`extra_body`: merged in) out."""
    payload = model._get_request_payload(HISTORY, stream=stream, **more)
    extra = payload.pop("extra_body", None) or {}
    if stream and model.stream_usage:
        payload["stream_options"] = {"include_usage": True}
    return {**payload, **extra}


async def test_the_streamed_answer_sends_langchains_request_unchanged(llm: ScriptedOpenAI) -> None:
    model = backend(llm, extra_body={"top_k": 20, "repetition_penalty": 1.1})
    llm.enqueue("Four.")
    events = [event async for event in stream_text(model, HISTORY)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Four."
    assert isinstance(events[-1], Usage) and events[-1].prompt_tokens == 10
    body = llm.requests[-1]
    assert body == expected(model, stream=True)
    assert body["messages"][1] == {"role": "user", "content": "Привет! 2+2?"}  # not escaped or dropped
    assert body["top_k"] == 20 and body["temperature"] == 0.2 and body["stream_options"] == {"include_usage": True}
    assert llm.headers[-1]["Authorization"] == "Bearer sk-test-123456"


async def test_langchains_own_paths_send_their_request_unchanged(llm: ScriptedOpenAI) -> None:
    model = backend(llm, extra_body={"top_k": 20})
    with_tools = model.bind_tools([make_calculator_tool()])
    llm.enqueue(ToolCalls(("calculator", {"expression": "2+2"})), "Four.", "Four again.")

    chunks = [chunk async for chunk in with_tools.astream(HISTORY)]  # streamed, with tools: LangChain's path
    assert any(chunk.tool_call_chunks for chunk in chunks)
    tools = with_tools.kwargs["tools"]
    assert llm.requests[-1] == expected(model, stream=True, tools=tools)
    assert llm.requests[-1]["tools"][0]["function"]["name"] == "calculator"

    assert (await model.ainvoke(HISTORY)).content == "Four."  # not streamed (the model's `streaming` is off)
    assert llm.requests[-1]["messages"] == expected(model, stream=False)["messages"]
    assert llm.requests[-1]["top_k"] == 20 and llm.requests[-1]["stream"] is True  # ChatOpenAI(streaming=True)

    plain = model.model_copy(update={"streaming": False})
    assert (await plain.ainvoke(HISTORY)).content == "Four again."
    assert llm.requests[-1] == expected(plain, stream=False)
    assert "stream" not in llm.requests[-1] or llm.requests[-1]["stream"] is False
