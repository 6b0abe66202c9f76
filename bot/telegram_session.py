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

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import ClientDecodeError, TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)

# Previews (drafts, streamed edits, typing) are worth nothing late: they fail fast and the streamer moves on.
_PREVIEW_METHODS = {"sendMessageDraft", "sendChatAction", "editMessageText"}
# A user waits on these: better "please try again" now than a minute of retries.
_FAIL_FAST_METHODS = _PREVIEW_METHODS | {"getChatMember"}
_PACED_PREFIXES = ("send",)
_MAX_PACED_CHATS = 10_000
_essential: ContextVar[bool] = ContextVar("adaptbot_essential", default=False)
# aiogram parses every reply as `Response[<the method's result type>]`. pydantic keeps such generic classes in a
# weak cache: with no reference left they are collected and rebuilt, about 15 ms of schema building each time,
# which was a tenth of the bot's CPU per message in bench/bench_bot.py. Holding them here keeps them built.
_response_types: dict[type, object] = {}


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
        if type(method) not in _response_types:
            _response_types[type(method)] = Response[method.__returning__]  # type: ignore[name-defined]
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
