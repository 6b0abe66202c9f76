"""The cloud backend sends the model exactly the request LangChain built: the bot's fast streamed path, LangChain's
own streamed and non-streamed paths, tools, and the parameters a team adds for its server (`extra_body`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from aiohttp import web
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


class PiecewiseOpenAI(ScriptedOpenAI):
    """Streams a raw body given as pieces, each written on its own (a TCP read may end anywhere in a line)."""

    pieces: list[bytes] = []

    async def _stream(self, request: web.Request, *args: Any, **kwargs: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in self.pieces:
            await resp.write(piece)
            await asyncio.sleep(0.01)  # its own read on the client's side
        await resp.write_eof()
        return resp


def sse(delta: dict[str, Any], **extra: Any) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "scripted-1",
             "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}
    return json.dumps(chunk, ensure_ascii=False).encode()


async def test_the_streamed_answer_is_read_whatever_the_line_ends_and_wherever_a_read_ends() -> None:
    """CRLF, CR and LF line ends, a CRLF and a Cyrillic letter split between two reads, comments, event names,
    `data:` without its space, the lines after [DONE]: the answer arrives whole, as the server meant it."""
    privet = sse({"content": "Привет"})
    cut = privet.index("и".encode()) + 1  # inside the two bytes of a letter
    body = [b": keep-alive comment\r\n\r\n", b"event: message\r\ndata: " + sse({"content": "Hi, "}) + b"\r",
            b"\n\r\n", b"data:" + privet[:cut], privet[cut:] + b"\n\n",
            b"data: " + sse({"content": "!"}) + b"\r\rdata: " + sse({}, usage={"prompt_tokens": 3,
                                                                             "completion_tokens": 2}) + b"\n\n",
            b'data: {"id": "c1", "object": "chat.completion.chunk", "created": 1,\r',  # one event, two data lines:
            b'\ndata: "model": "scripted-1", "choices": [{"index": 0, "delta": {"content": "?"}}]}\r\n\r\n',
            b"data: [DONE]\n\n", b"data: " + sse({"content": " after done"}) + b"\n\n"]
    async with PiecewiseOpenAI() as llm:
        llm.pieces = body
        events = [event async for event in stream_text(backend(llm), HISTORY)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi, Привет!?"
    assert events[-1] == Usage(prompt_tokens=3, completion_tokens=2)


async def test_an_error_inside_the_stream_and_a_body_cut_mid_event_fail_as_the_sdk_fails() -> None:
    async with PiecewiseOpenAI() as llm:
        llm.pieces = [b"data: " + sse({"content": "Hi"}) + b"\n\n",
                      b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n']
        with pytest.raises(openai.APIError, match="The server had an error"):
            [event async for event in stream_text(backend(llm), HISTORY)]
        # an event the body ends in before its blank line is not dispatched (the SSE standard's rule) ...
        llm.pieces = [b"data: " + sse({"content": "Hi"}) + b"\n\n", b"data: " + sse({"content": " the"})]
        events = [event async for event in stream_text(backend(llm), HISTORY)]
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi"
        # ... but one whose blank line is the body's last CR is complete
        llm.pieces = [b"data: " + sse({"content": "Hi"}) + b"\r\r", b"data: " + sse({"content": " there"}) + b"\r\r"]
        events = [event async for event in stream_text(backend(llm), HISTORY)]
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hi there"


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The model client's pools answer httpcore's "has this idle connection been closed?" with the bot's cheaper
    probe (`cheap_connection_probes`): an open idle connection is used again, one the server closed while idle is
    dropped for a new one. The SDK's retries are off: a request sent on the dead connection would fail."""
    llm = ScriptedOpenAI()
    llm.keepalive_timeout = 0.5
    async with llm:
        model = backend(llm)
        pool = model.root_async_client._client._transport._pool
        assert type(pool._network_backend).__name__ == "CheapProbes"

        async def ask(expected: str) -> None:
            llm.enqueue(expected)
            events = [event async for event in stream_text(model, HISTORY)]
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected

        await ask("one")
        await ask("two")  # at once: the same connection
        await asyncio.sleep(1.5)  # the server closes the idle connection meanwhile
        await ask("three")
    first, second, third = llm.client_ports
    assert second == first and third != second


def self_signed(tmp_path: Any) -> tuple[Any, Any]:
    """A certificate for 127.0.0.1 and the server and client TLS contexts trusting it."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_the_cheaper_probe_works_over_tls(tmp_path: Any) -> None:
    """The probing stream wraps the TLS stream httpcore upgrades to: reuse and a closed idle connection as above."""
    import httpcore2

    from agents.backends.cloud import _cheap_probes_class

    server_tls, client_tls = self_signed(tmp_path)
    ports: list[int] = []

    async def hello(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cheap = _cheap_probes_class()
    try:
        async with httpcore2.AsyncConnectionPool(ssl_context=client_tls, max_connections=1,
                                                 network_backend=cheap(httpcore2.AnyIOBackend())) as pool:
            for pause in (0.0, 0.0, 1.5):
                await asyncio.sleep(pause)
                response = await pool.request("GET", f"https://127.0.0.1:{port}/")
                assert response.status == 200 and response.content == b"hello"
    finally:
        await runner.cleanup()
    first, second, third = ports
    assert second == first and third != second
