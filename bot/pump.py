"""Moves updates from the inbox to the dispatcher: one worker per chat (in order), chats in parallel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.types import Update

from bot.inbox import Claimed, Inbox, is_urgent

log = logging.getLogger(__name__)

_RETRYABLE = (TelegramNetworkError, TelegramServerError, TelegramRetryAfter, OSError)


class UpdatePump:
    def __init__(self, inbox: Inbox, dp: Dispatcher, bot: Bot, *, scan_interval: float = 2.0) -> None:
        self.inbox, self.dp, self.bot = inbox, dp, bot
        self.scan_interval = scan_interval
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._claimed: dict[int, asyncio.Task[Any]] = {}
        self._urgent_tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, updates: Sequence[dict[str, Any]]) -> list[int]:
        """Record updates durably, then schedule them; returns the new update ids."""
        new = set(await self.inbox.add(updates))
        for raw in updates:
            if raw["update_id"] in new and is_urgent(raw):
                task = asyncio.create_task(self._urgent(int(raw["update_id"])))
                self._urgent_tasks.add(task)
                task.add_done_callback(self._urgent_tasks.discard)
        self._wakeup.set()
        return sorted(new)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="update-pump")

    @property
    def busy(self) -> int:
        return len(self._claimed)

    async def _run(self) -> None:
        while not self._closing:
            try:
                for key in await self.inbox.pending_chats():
                    if key not in self._workers and not self._closing:
                        self._workers[key] = asyncio.create_task(self._drain(key), name=f"chat-{key}")
            except Exception:  # noqa: BLE001 - the database may be down for a moment; keep going
                log.exception("inbox scan failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.scan_interval)

    async def _drain(self, key: str) -> None:
        try:
            while not self._closing:
                item = await self.inbox.claim(key)
                if item is None:
                    return
                await self._process(item)
        except Exception:  # noqa: BLE001
            log.exception("worker for %s failed", key)
        finally:
            self._workers.pop(key, None)

    async def _urgent(self, update_id: int) -> None:
        item = await self.inbox.take(update_id)
        if item is not None:
            await self._process(item)

    async def _process(self, item: Claimed) -> None:
        task = asyncio.create_task(self._feed(item.payload))
        self._claimed[item.update_id] = task
        renew = asyncio.create_task(self._keep_lease(item.update_id))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # shutdown past its grace period: stop the answer and give the update back for the next run
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            renew.cancel()
            await asyncio.shield(self.inbox.release(item.update_id))
            raise
        except _RETRYABLE as exc:
            if item.attempts < self.inbox.max_attempts and not self._closing:
                log.warning("update %s failed (%s); it will run again", item.update_id, type(exc).__name__)
                await self.inbox.release(item.update_id)
                return
            await self.inbox.finish(item.update_id, error=f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - already reported to the user by the error router
            log.exception("update %s failed", item.update_id)
            await self.inbox.finish(item.update_id, error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            renew.cancel()
            self._claimed.pop(item.update_id, None)
        await self.inbox.finish(item.update_id)

    async def _feed(self, payload: dict[str, Any]) -> Any:
        update = Update.model_validate(payload, context={"bot": self.bot})
        return await self.dp.feed_update(self.bot, update)

    async def _keep_lease(self, update_id: int) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.inbox.lease_seconds / 3)
                try:
                    await self.inbox.renew([update_id])
                except Exception:  # noqa: BLE001
                    log.warning("could not renew the lease of update %s", update_id)

    async def drain(self, timeout: float) -> None:
        """Stop taking work; let answers in flight finish for up to `timeout` s; give back the rest."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        workers = list(self._workers.values()) + list(self._urgent_tasks)
        if workers:
            log.info("waiting up to %.0f s for %d answers in flight", timeout, len(self._claimed))
            _, late = await asyncio.wait(workers, timeout=timeout or None)
            for worker in late:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


async def poll(bot: Bot, pump: UpdatePump, stop: asyncio.Event, *, timeout: int = 25,
               allowed_updates: list[str] | None = None) -> None:
    """Long polling: an update is confirmed to Telegram (the next offset) only after the inbox holds it."""
    offset: int | None = None
    backoff = 1.0
    while not stop.is_set():
        fetch = asyncio.create_task(bot.get_updates(offset=offset, timeout=timeout, allowed_updates=allowed_updates,
                                                    request_timeout=timeout + 10))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({fetch, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if fetch not in done:
            fetch.cancel()
            with contextlib.suppress(BaseException):
                await fetch
            return
        try:
            updates = fetch.result()
        except TelegramRetryAfter as exc:
            await asyncio.sleep(exc.retry_after)
            continue
        except Exception as exc:  # noqa: BLE001 - network, 5xx: wait and poll again
            log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        if not updates:
            continue
        raw = [u.model_dump(mode="json", exclude_none=True, by_alias=True) for u in updates]
        while True:
            try:
                await pump.submit(raw)
                break
            except Exception:  # noqa: BLE001 - not recorded means not confirmed: keep trying
                log.exception("could not record %d updates; retrying", len(raw))
                await asyncio.sleep(1.0)
        offset = max(u.update_id for u in updates) + 1
