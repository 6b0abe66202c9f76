"""A scripted OpenAI-compatible server on loopback: the network edge of every model test.

    async with ScriptedOpenAI() as llm:
        llm.enqueue("Hello!")                           # next completion: this text
        llm.enqueue(ToolCalls(("calculator", {"expression": "2+2"})))
        llm.enqueue(Fault(status=429))                  # next request fails
        llm.report_usage = False                        # a provider that never reports token usage
        ... ChatOpenAI(base_url=llm.base_url, api_key="test") ...
        llm.requests[-1]["messages"]                    # what the model was sent

When the script is empty, `default(request_body)` answers (echo of the last user message by default).
Both streaming (SSE) and plain JSON responses are produced, as the real API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Text:
    content: str
    delay: float = 0.0  # seconds before the first byte
    chunk_size: int = 8  # characters per streamed delta
    chunk_delay: float = 0.0
    break_after: int | None = None  # stream: drop the connection after this many characters
    gate: asyncio.Event | None = None  # wait for the test to open it before answering


@dataclass
class ToolCalls:
    calls: tuple[tuple[str, dict[str, Any]], ...]
    content: str = ""
    delay: float = 0.0

    def __init__(self, *calls: tuple[str, dict[str, Any]], content: str = "", delay: float = 0.0) -> None:
        self.calls, self.content, self.delay = tuple(calls), content, delay


@dataclass
class Fault:
    status: int = 500
    body: dict[str, Any] = field(default_factory=lambda: {"error": {"message": "scripted failure"}})
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stall:
    """Accept the request and never answer (until the client gives up)."""

    seconds: float = 3600.0


Reply = str | Text | ToolCalls | Fault | Stall


def echo(body: dict[str, Any]) -> Reply:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1]["content"] if users else ""
    if isinstance(last, list):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    return f"echo: {last}"


class ScriptedOpenAI:
    def __init__(self, default: Callable[[dict[str, Any]], Reply] = echo, delay: float = 0.0) -> None:
        self.default = default
        self.delay = delay  # added before every answer
        self.report_usage = True  # False: no `usage` in any answer, as some OpenAI-compatible servers do
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        # per streamed text reply: (characters sent, whether the client read it to the end)
        self.streamed: list[tuple[int, bool]] = []
        self._script: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._closing = asyncio.Event()
        self.in_flight = 0  # requests being answered right now
        self.max_in_flight = 0
        self.keepalive_timeout = 75.0  # seconds an idle keep-alive connection stays open (set before start)
        self.client_ports: list[int] = []  # per request: the client's port (a new one: a new connection)
        self._arrived = asyncio.Condition()  # notified when a request has taken its scripted reply

    # --- script -----------------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        self._script.extend(replies)

    async def wait_for_requests(self, count: int, timeout: float = 20.0) -> None:
        """Wait until `count` requests in all have arrived (each has taken its scripted reply by then)."""
        async def _wait() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= count)
        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{len(self.requests)} of {count} model requests arrived in {timeout} s") from None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def user_messages(self, index: int = -1) -> list[str]:
        """The user-message contents of request `index`."""
        return [m["content"] for m in self.requests[index]["messages"] if m["role"] == "user"]

    # --- server -----------------------------------------------------------------------------------
    async def start(self) -> ScriptedOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=self.keepalive_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.client_ports.append(peer[1] if peer else 0)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self._script.popleft() if self._script else self.default(body)
        async with self._arrived:
            self._arrived.notify_all()
        if isinstance(reply, str):
            reply = Text(reply)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(reply, Stall):
            with contextlib.suppress(TimeoutError):  # a stall ends when the server stops
                await asyncio.wait_for(self._closing.wait(), reply.seconds)
            return web.json_response({"error": {"message": "stalled"}}, status=504)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if isinstance(reply, Text) and reply.gate is not None:
            await reply.gate.wait()
        if isinstance(reply, Fault):
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        model = body.get("model", "scripted")
        cid = f"chatcmpl-{next(self._ids)}"
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if isinstance(reply, ToolCalls):
            tool_calls = [
                {"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for name, args in reply.calls
            ]
            message: dict[str, Any] = {"role": "assistant", "content": reply.content or None, "tool_calls": tool_calls}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": reply.content}
            finish = "stop"
        if not body.get("stream"):
            return web.json_response({
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                **({"usage": usage} if self.report_usage else {}),
            })
        return await self._stream(request, cid, model, reply, message, finish, usage, body)

    async def _stream(self, request: web.Request, cid: str, model: str, reply: Text | ToolCalls,
                      message: dict[str, Any], finish: str, usage: dict[str, int], body: dict[str, Any]
                      ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> None:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        if isinstance(reply, ToolCalls):
            for start in range(0, len(reply.content), 8):  # the text before the calls streams like any text
                await send({"content": reply.content[start:start + 8]})
            for i, call in enumerate(message["tool_calls"]):
                await send({"tool_calls": [{"index": i, **call}]})
        else:
            text = reply.content
            for start in range(0, len(text), max(1, reply.chunk_size)):
                if reply.break_after is not None and start >= reply.break_after:
                    request.transport.close()  # type: ignore[union-attr]  # the stream breaks half-way
                    return resp
                try:
                    await send({"content": text[start:start + reply.chunk_size]})
                except ConnectionResetError:  # the client closed the stream (a guard stopped the answer)
                    self.streamed.append((start, False))
                    return resp
                if reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
            self.streamed.append((len(text), True))
        await send({}, finish)
        if body.get("stream_options", {}).get("include_usage") and self.report_usage:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                     "choices": [], "usage": usage}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
