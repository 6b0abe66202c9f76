"""Outgoing Telegram calls that survive Telegram: retry_after on 429, backoff on 5xx and network errors, pacing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)

# Previews (drafts, streamed edits, typing) are worth nothing late: they fail fast and the streamer moves on.
_PREVIEW_METHODS = {"sendMessageDraft", "sendChatAction", "editMessageText"}
# A user waits on these: better "please try again" now than a minute of retries.
_FAIL_FAST_METHODS = _PREVIEW_METHODS | {"getChatMember"}
_PACED_PREFIXES = ("send",)
# Calls that add a message each time they reach Telegram: repeated after Telegram got them, they double it.
_ADDS_MESSAGES = ("send", "forwardMessage", "copyMessage")
# Failures that prove the request never left this machine (no connection was made), so a repeat cannot double it.
_NEVER_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_MAX_PACED_CHATS = 10_000
# A Telegram call that raised one of these after its retry window: nothing definitive happened (the update is given
# back to the inbox and runs again later), unlike a refusal such as 400 Bad Request.
UNDELIVERED = (TelegramNetworkError, TelegramServerError, TelegramRetryAfter, ClientDecodeError)
_essential: ContextVar[bool] = ContextVar("adaptbot_essential", default=False)
# aiogram parses every reply as `Response[<the method's result type>]`. pydantic keeps such generic classes in a
# weak cache: with no reference left they are collected and rebuilt, about 15 ms of schema building each time,
# which was a tenth of the bot's CPU per message in bench/bench_bot.py. Holding them here keeps them built.
_response_types: dict[type, object] = {}


def response_type(method: type[TelegramMethod[Any]]) -> Any:
    """`Response[<the method's result type>]`, the class aiogram parses the method's replies with, kept built."""
    built = _response_types.get(method)
    if built is None:
        built = _response_types[method] = Response[method.__returning__]  # type: ignore[name-defined]
    return built


class SendUncertain(TelegramAPIError):
    """A message was sent and no answer came back: Telegram may or may not have it, so it is not sent again."""


def adds_message(name: str) -> bool:
    return name.startswith(_ADDS_MESSAGES) and name not in _PREVIEW_METHODS


def _never_sent(exc: BaseException) -> bool:
    """True when the failure (or what caused it) shows that no connection to Telegram was made."""
    seen: BaseException | None = exc
    for _ in range(5):  # aiogram wraps aiohttp's error: look at the chain, not only the wrapper
        if seen is None:
            return False
        if isinstance(seen, _NEVER_SENT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def essential() -> Iterator[None]:
    """Calls made inside (the final answer's edits) are retried like sends, not dropped like previews."""
    token = _essential.set(True)
    try:
        yield
    finally:
        _essential.reset(token)


class ResilientRequests(BaseRequestMiddleware):
    def __init__(self, *, retry_seconds: float = 60.0, chat_interval: float = 1.0,
                 group_interval: float = 3.0) -> None:
        self.retry_seconds = retry_seconds
        self.chat_interval, self.group_interval = chat_interval, group_interval
        self._next_send: dict[Any, float] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        response = await self._send(make_request, bot, method)
        response_type(type(method))  # after the reply, not before: aiogram built the class (once) to parse it
        return response

    async def _send(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                    method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        name = method.__api_method__
        if name == "getUpdates":
            return await make_request(bot, method)
        preview = name in _FAIL_FAST_METHODS and not _essential.get()
        chat_id = getattr(method, "chat_id", None)
        if name.startswith(_PACED_PREFIXES) and name not in _PREVIEW_METHODS and chat_id is not None:
            await self._pace(chat_id)
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                wait = float(exc.retry_after)
                if preview or time.monotonic() + wait > deadline:
                    raise
                log.info("Telegram flood control on %s: waiting %.0f s", name, wait)
            except (TelegramServerError, TelegramNetworkError, ClientDecodeError) as exc:
                # ClientDecodeError: a proxy in front of Telegram answered a 5xx page instead of JSON
                if preview:
                    raise
                if isinstance(exc, TelegramNetworkError) and adds_message(name) and not _never_sent(exc):
                    # the request may have reached Telegram (a read timeout, a connection reset mid-way): sent
                    # again, it could show twice; better one message the user may have than two they surely have
                    log.warning("no answer from Telegram to %s in chat %s (%s): it may have arrived; not sent "
                                "again", name, chat_id, exc.message)
                    raise SendUncertain(method, f"no answer to {name}: {exc.message}") from exc
                wait = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
                if time.monotonic() + wait > deadline:
                    log.warning("giving up on %s after %d attempts: %s", name, attempt + 1, type(exc).__name__)
                    raise
                log.info("Telegram %s failed (%s); retry in %.1f s", name, type(exc).__name__, wait)
            attempt += 1
            await asyncio.sleep(wait)

    async def _pace(self, chat_id: Any) -> None:
        interval = self.group_interval if str(chat_id).startswith("-") else self.chat_interval
        if interval <= 0:
            return
        if len(self._next_send) > _MAX_PACED_CHATS:
            self._forget_idle()
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            wait = self._next_send.get(chat_id, 0.0) - now
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_send[chat_id] = max(now, self._next_send.get(chat_id, 0.0)) + interval

    def _forget_idle(self) -> None:
        """Drop the pacing state of chats whose interval has passed (it would otherwise grow with every chat)."""
        now = time.monotonic()
        for chat_id in [c for c, at in self._next_send.items() if at < now]:
            lock = self._locks.get(chat_id)
            if lock is None or not lock.locked():
                self._next_send.pop(chat_id, None)
                self._locks.pop(chat_id, None)
