"""The cloud backend: any OpenAI-compatible chat API through langchain-openai."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import select
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from agents.backends.base import Backend
from agents.errors import AgentsError, ModelUnavailableError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)


class CloudBackend(Backend):
    name = "cloud"
    description = {
        "en": "cloud model via an OpenAI-compatible API",
        "ru": "облачная модель через OpenAI-совместимый API",
    }

    def __init__(self, *, model: str, api_key: SecretStr | None, base_url: str | None, timeout: float,
                 max_retries: int, temperature: float = 0.3) -> None:
        self._params = dict(model=model, base_url=base_url, timeout=timeout, max_retries=max_retries,
                            temperature=temperature)
        self._api_key = api_key
        self._model: BaseChatModel | None = None
        self._building: asyncio.Future[None] | None = None

    def unavailable_reason(self) -> str | None:
        if self._api_key is None or not self._api_key.get_secret_value():
            return "the cloud model needs OPENAI_API_KEY"
        return None

    async def warm_up(self) -> None:
        """Build the client now (the bot does it once it polls: start-up does not wait for langchain-openai)."""
        await self.ready()

    async def ready(self) -> None:
        """The client, built once in a thread: importing langchain-openai takes about a second, which would block
        the event loop; every caller meanwhile waits for the same build."""
        if self._model is not None:
            return
        if self._building is None:
            self._building = asyncio.ensure_future(asyncio.to_thread(self._build))
        await asyncio.shield(self._building)  # a turn given up while it waits leaves the build to the others

    def _build(self) -> None:
        with contextlib.suppress(AgentsError):  # not configured: the turn says so when it asks for the model
            self.chat_model()

    def chat_model(self) -> BaseChatModel:
        if self._model is None:
            if reason := self.unavailable_reason():
                raise ModelUnavailableError(reason)
            from langchain_openai import ChatOpenAI

            # An explicit timeout and retry count: without them a stalled request can hang forever. The client's
            # read timeout bounds the silence between chunks already (and the turn runner's backstop behind it):
            # langchain-openai's own per-chunk timeout would start a task per chunk for nothing.
            model = ChatOpenAI(
                api_key=self._api_key,
                streaming=True,
                stream_usage=True,
                stream_chunk_timeout=None,
                **self._params,  # type: ignore[arg-type]
            )
            model.async_client = DictStreams(model.async_client)
            cheap_connection_probes(model.root_async_client)
            self._model = model
        return self._model


class DictStreams:
    """The client's `chat.completions` as langchain-openai calls it, with streamed chunks handed over as the plain
    dicts the server sent: langchain-openai converts either, and building the SDK's typed chunk objects cost more
    CPU than all the rest of a streamed answer's path (bench/bench_bot.py, issue 17). A call through `create`
    sends its body untouched (`_as_sent`); everything else (retries, status errors, the raw-response helpers
    LangChain uses for some calls, which keep the SDK's own parameter handling) is the SDK's."""

    def __init__(self, completions: Any) -> None:
        self._completions = completions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)

    async def create(self, **payload: Any) -> Any:
        if isinstance(payload.get("response_format"), type):  # a class: the SDK's own checks and conversion
            sent = payload
        else:
            sent = _as_sent(payload)
        if not payload.get("stream"):
            return await self._completions.create(**sent)
        return _SSEDicts(self._completions.with_streaming_response.create(**sent))


_SDK_OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")  # arguments of the call, not the body


def _as_sent(payload: dict[str, Any]) -> dict[str, Any]:
    """`create`'s arguments that send `payload`'s body as it is: as `extra_body`, the SDK's documented way to send
    parameters untouched (it takes precedence over the typed arguments, here just the model and an empty message
    list). The SDK otherwise walks every request's parameters against its typed definitions to apply aliases and
    formats, which a chat completion's parameters have none of: that walk cost about 6 ms per request with 20 turns
    of history, as much as all the rest of a streamed answer (bench/bench_bot.py, issue 17)."""
    options = {key: payload[key] for key in _SDK_OPTIONS if key in payload}  # timeout=None: no timeout, as asked
    body = {key: value for key, value in payload.items() if key not in _SDK_OPTIONS}
    options["extra_body"] = {**body, **(options.get("extra_body") or {})}  # the caller's extra_body wins, as ever
    return {"model": body["model"], "messages": [], "stream": bool(body.get("stream")), **options}


class _SSEDicts:
    """One streamed completion: entered, it sends the request (status errors raise as the SDK raises them);
    iterated, it yields each server-sent event's JSON data, up to `[DONE]`."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self._response: Any = None

    async def __aenter__(self) -> _SSEDicts:
        self._response = await self._request.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._request.__aexit__(*exc)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        import openai
        from openai._httpx2 import request_exceptions, timeout_exceptions  # what the SDK's own stream maps

        request = self._response.http_response.request
        try:
            async with contextlib.aclosing(self._chunks()) as chunks:
                async for chunk in chunks:
                    yield chunk
        except timeout_exceptions() as exc:  # a broken or stalled stream fails as it does through the SDK
            raise openai.APITimeoutError(request=request) from exc
        except request_exceptions() as exc:
            raise openai.APIConnectionError(request=request) from exc

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The events' JSON data. Lines are split on the body's bytes, not on decoded text: the text and line
        layers of httpx cost more per chunk than the rest of this (JSON reads UTF-8 bytes itself)."""
        events = _SSEEvents(self._response.http_response.request)
        rest = b""
        async for block in self._response.http_response.aiter_bytes():
            block = rest + block if rest else block
            tail = b""
            if b"\r" in block:  # CRLF or CR line ends (a CR last may be half of a CRLF: kept for the next block)
                if block.endswith(b"\r"):
                    block, tail = block[:-1], b"\r"
                block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            lines = block.split(b"\n")
            rest = lines.pop() + tail
            for chunk in events.feed(lines):
                yield chunk
        if rest.endswith(b"\r"):  # the body's last line end is a CR: that line is complete
            for chunk in events.feed([rest[:-1]]):
                yield chunk
        # an event the body ends in without its blank line is incomplete: not dispatched (the SSE standard's rule)


class _SSEEvents:
    """Server-sent event lines in, each event's JSON data out, up to `[DONE]` (the lines after it are read on to
    the end of the body, as the SDK does: a response left half-read costs its connection)."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self._data: list[bytes] = []
        self._done = False

    def feed(self, lines: list[bytes]) -> Iterator[dict[str, Any]]:
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                continue
            if line or not data:
                continue  # comments, event names, ids: nothing a chat completion chunk needs
            text = b"\n".join(data)
            data.clear()
            if self._done or text.startswith(b"[DONE]"):
                self._done = True
                continue
            try:
                chunk = json.loads(text)
            except UnicodeDecodeError:  # not UTF-8: read as a text decoder would, bad bytes replaced
                chunk = json.loads(text.decode("utf-8", "replace"))
            if isinstance(chunk, dict) and chunk.get("error"):  # an error reported inside the stream
                import openai

                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(message if isinstance(message, str) and message else
                                      "An error occurred during streaming", self._request, body=error)
            yield chunk


def plain_text_stream(model: BaseChatModel, messages: Sequence[BaseMessage]
                      ) -> AsyncIterator[tuple[str, dict[str, Any] | None]] | None:
    """The answer of our cloud model as (text, usage) pieces, without LangChain's per-chunk message objects and
    merging (where only the text is needed they cost as much again as the rest); None when `model` is not our
    cloud model, or when LangChain callbacks or tracing watch it (they are owed every chunk)."""
    client = getattr(model, "async_client", None)
    if not isinstance(client, DictStreams) or getattr(model, "callbacks", None) or _tracing():
        return None
    payload = model._get_request_payload(list(messages), stream=True)  # type: ignore[attr-defined]
    if "messages" not in payload:  # the Responses API: LangChain's own path
        return None
    if getattr(model, "stream_usage", False):
        payload["stream_options"] = {"include_usage": True}
    return _plain_text(client, payload)


async def _plain_text(client: DictStreams, payload: dict[str, Any]
                      ) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    async with await client.create(**payload) as stream:
        async for chunk in stream:
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text, None
            if usage := chunk.get("usage"):
                yield "", usage


def _tracing() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true") for name in ("LANGSMITH_TRACING",
                                                                               "LANGCHAIN_TRACING_V2"))


def cheap_connection_probes(client: Any) -> bool:
    """Give the SDK client's connection pools a network backend whose streams answer "is this idle connection
    readable?" from their socket, kept at connect; True when a pool got it.

    httpcore asks that of every pooled connection at each request and at each response's end (a server that closed
    an idle connection has made it readable), so its cost grows with the number of connections, and anyio answers it
    by building a dict of every attribute of the socket, `getpeername` included: 11 us a probe, about 7% of the
    CPU of a streamed answer under bench/bench_bot.py's load (issue 17; upstream, pydantic/httpx2 PR 1169 would scan
    less). The pools are reached through private attributes; where they are not found (a later release), nothing
    changes."""
    cheap = _cheap_probes_class()
    http = getattr(client, "_client", None)  # the SDK's httpx client
    transports = [getattr(http, "_transport", None), *(getattr(http, "_mounts", None) or {}).values()]
    wrapped = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None or isinstance(backend, cheap):
            continue
        pool._network_backend = cheap(backend)  # type: ignore[union-attr]
        wrapped = True
    if not wrapped:
        log.debug("no connection pool found on the model client: idle connections are probed as httpcore does")
    return wrapped


def _readable(sock: socket.socket) -> bool:
    """What httpcore's own probe answers: data or EOF waiting (a closed socket counts as readable)."""
    fd = sock.fileno()
    if fd < 0:
        return True
    if hasattr(select, "poll"):
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        return bool(poll.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


@functools.cache
def _cheap_probes_class() -> type:
    """The network backend of `cheap_connection_probes` and its stream, on httpcore2's public base classes
    (imported here, with the SDK, not when this module is)."""
    import httpcore2

    class ProbedStream(httpcore2.AsyncNetworkStream):
        def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
            self._inner = inner
            self._sock: socket.socket | None = inner.get_extra_info("socket")

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return await self._inner.read(max_bytes, timeout)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            await self._inner.write(buffer, timeout)

        async def aclose(self) -> None:
            await self._inner.aclose()

        async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                            timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
            return ProbedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

        def get_extra_info(self, info: str) -> Any:
            if info == "is_readable" and self._sock is not None:
                return _readable(self._sock)
            return self._inner.get_extra_info(info)

    class CheapProbes(httpcore2.AsyncNetworkBackend):
        def __init__(self, inner: httpcore2.AsyncNetworkBackend) -> None:
            self._inner = inner

        async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
            return ProbedStream(await self._inner.connect_tcp(*args, **kwargs))

        async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore2.AsyncNetworkStream:
            return ProbedStream(await self._inner.connect_unix_socket(*args, **kwargs))

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    return CheapProbes
