"""Moves updates from the inbox to the dispatcher: one worker per chat (in order), chats in parallel.

The pump of every bot process sharing the database works on the same inbox. New updates start their chat's worker
at once; a periodic scan picks up what other processes released, what a dead process left behind (its leases ran
out, or it provably died on this machine) and what arrived through another process while this one was busy.
A heartbeat renews the leases of the updates in flight; it also looks for an urgent update (/stop) recorded by
another process for a chat this process is answering, since only this process can stop that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramRetryAfter
from aiogram.types import Update

from agents.lru import LRUCache
from bot.inbox import Claimed, Inbox, chat_key_of, is_question, is_urgent
from bot.telegram_session import UNDELIVERED

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE = (*UNDELIVERED, OSError)  # Telegram or the database out of reach: nothing definitive happened
# An update that could not be delivered runs again after a tenth of the time it has waited so far (1 s to 5 min),
# for as long as Telegram itself would keep it (about a day); attempts are not counted: the update is not at fault.
_RETRY_SHARE, _RETRY_MIN, _RETRY_MAX = 0.1, 1.0, 300.0
_RETRY_PATIENCE = 86400.0
_KEEP_FINISHED = 3 * 86400.0  # Telegram redelivers for about a day; finished updates are forgotten after three
_PRUNE_EVERY = 3600.0
_MAX_PARSED = 1024  # parsed updates kept for their run (a fetch brings at most 100)


class UpdatePump:
    def __init__(self, inbox: Inbox, dp: Dispatcher, bot: Bot, *, scan_interval: float = 2.0,
                 tick_interval: float = 1.0) -> None:
        self.inbox, self.dp, self.bot = inbox, dp, bot
        self.scan_interval, self.tick_interval = scan_interval, tick_interval
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()  # chats that got new work since their worker last looked
        self._claimed: dict[int, tuple[Claimed, asyncio.Task[Any]]] = {}
        self._urgent_tasks: dict[int, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._closing = False
        self._stopping = asyncio.Event()  # set with _closing: wakes the updates waiting to run again
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        # updates received here as objects, until they run; one never run here (another process took it) would stay
        # for good, so the oldest are dropped beyond a cap (they are parsed again from the inbox if they do run)
        self._parsed: LRUCache[int, Update] = LRUCache(_MAX_PARSED)

    async def submit(self, updates: Sequence[dict[str, Any]], parsed: Sequence[Update] = ()) -> list[int]:
        """Record updates durably, then schedule them; returns the new update ids.

        `parsed`: the same updates as aiogram objects, when the caller has them (polling), kept so that they are
        not validated a second time when they run here.
        """
        new = set(await self.inbox.add(updates))
        objects = {u.update_id: u for u in parsed}
        for raw in updates:
            update_id = int(raw["update_id"])
            if update_id not in new or self._closing:
                continue  # a duplicate, or shutting down: recorded is enough, another run will answer it
            if update_id in objects:
                self._parsed[update_id] = objects[update_id]
            key = chat_key_of(raw)
            if is_urgent(raw):
                self._start_urgent(update_id, key)
            else:
                self._kick(key)
        return sorted(new)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="update-pump")
        self._ticker = asyncio.create_task(self._tick(), name="update-pump-heartbeat")

    @property
    def busy(self) -> int:
        """Updates being processed right now."""
        return len(self._claimed)

    @property
    def closing(self) -> bool:
        return self._closing

    # --- /stop: questions not answered yet ---------------------------------------------------------------------
    def held_question(self, chat_id: int, before: int, user_id: int | None,
                      bot: tuple[int, str | None] | None = None) -> int | None:
        """The update id of a question (`is_question`) of `user_id` (None: anyone's) in this chat that this process
        took from the inbox and has not finished, received before update `before`; None when there is none."""
        key = f"c{chat_id}"
        return next((uid for uid, (item, _) in self._claimed.items()
                     if item.chat_key == key and uid < before and is_question(item.payload, user_id, bot)), None)

    async def withdraw(self, chat_id: int, before: int, user_id: int | None,
                       bot: tuple[int, str | None] | None = None) -> list[int]:
        """Drop the questions of `user_id` (None: anyone's) still waiting in this chat's inbox, received before
        update `before`: they are never answered. Returns their update ids."""
        return await self.inbox.withdraw(f"c{chat_id}", before, user_id, bot)

    # --- scheduling ------------------------------------------------------------------------------------------
    def _kick(self, key: str) -> None:
        self._dirty.add(key)
        if key not in self._workers and not self._closing:
            self._workers[key] = asyncio.create_task(self._drain(key), name=f"chat-{key}")

    def _start_urgent(self, update_id: int, key: str) -> None:
        if update_id in self._urgent_tasks or self._closing:
            return
        task = asyncio.create_task(self._urgent(update_id, key), name=f"urgent-{update_id}")
        self._urgent_tasks[update_id] = task
        task.add_done_callback(lambda _: self._urgent_tasks.pop(update_id, None))

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self.inbox.reap()
                for key in await self.inbox.pending_chats():
                    if key not in self._workers:
                        self._kick(key)
                if time.monotonic() >= self._next_prune:
                    self._next_prune = time.monotonic() + _PRUNE_EVERY
                    await self.inbox.prune(_KEEP_FINISHED)
            except Exception:  # the database may be down for a moment; keep going
                log.exception("inbox scan failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.scan_interval)

    async def _drain(self, key: str) -> None:
        try:
            item: Claimed | None = None
            while not self._closing:
                if item is None:
                    if key not in self._dirty:  # nothing new since the last look
                        return
                    self._dirty.discard(key)
                    item = await self.inbox.claim(key)
                    continue
                self._dirty.discard(key)  # the claim that follows this update sees what arrived until now
                item = await self._process(item, then_claim=key)
            if item is not None:  # claimed just as the shutdown began: it is the next run's
                await self.inbox.release(item.update_id)
        except Exception:  # the next scan starts a new worker
            log.exception("worker for %s failed", key)
        finally:
            self._workers.pop(key, None)

    async def _urgent(self, update_id: int, key: str) -> None:
        try:
            item = await self.inbox.take(update_id, key)
            if item is not None:
                await self._process(item, then_claim=None)
        except Exception:  # it stays in the inbox and runs in order
            log.exception("urgent update %s failed", update_id)

    # --- processing ------------------------------------------------------------------------------------------
    async def _process(self, item: Claimed, *, then_claim: str | None) -> Claimed | None:
        """Run one update; once it is finished, claim `then_claim`'s next update (one database round trip)."""
        task = asyncio.create_task(self._feed(item))
        self._claimed[item.update_id] = (item, task)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # shutdown past its grace period: stop the answer and give the update back for the next run
            task.cancel()
            await asyncio.wait({task})  # not swallowing a second cancel: a hung database cannot hold the exit
            if not task.cancelled():
                task.exception()  # retrieved: whatever it was, the update runs again
            self._claimed.pop(item.update_id, None)
            await asyncio.shield(self.inbox.release(item.update_id))
            raise
        except _RETRYABLE as exc:
            return await self._retry_later(item, exc, then_claim)
        except Exception as exc:  # already reported to the user by the error router
            self._claimed.pop(item.update_id, None)
            log.exception("update %s failed", item.update_id)
            return await self._finish(item, f"{type(exc).__name__}: {exc}", then_claim)
        self._claimed.pop(item.update_id, None)
        return await self._finish(item, None, then_claim)

    async def _retry_later(self, item: Claimed, exc: BaseException, then_claim: str | None) -> Claimed | None:
        """Telegram (or the database) stayed out of reach: give the update back to run again after a pause.

        A turn that ran to an end is stored, so the next run delivers it without asking the model again. The update
        stays claimed during the pause (its lease renewed), so the chat's later updates keep waiting behind it.
        """
        waited = time.time() - item.created
        if waited > _RETRY_PATIENCE:
            self._claimed.pop(item.update_id, None)
            log.error("update %s could not be delivered for %.0f h; giving up", item.update_id, waited / 3600)
            return await self._finish(item, f"{type(exc).__name__}: {exc}", then_claim)
        pause = min(_RETRY_MAX, max(_RETRY_MIN, waited * _RETRY_SHARE))
        log.warning("update %s could not be delivered (%s: %s); it runs again in %.0f s", item.update_id,
                    type(exc).__name__, exc, 0 if self._closing else pause)
        try:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
        finally:
            self._claimed.pop(item.update_id, None)
            await asyncio.shield(self.inbox.release(item.update_id))  # not an attempt: the update is not at fault
        self._dirty.add(item.chat_key)  # look again: it is still the chat's next update
        return None

    async def _finish(self, item: Claimed, error: str | None, then_claim: str | None) -> Claimed | None:
        return await self.inbox.finish(item.update_id, error, then_claim=None if self._closing else then_claim)

    async def _feed(self, item: Claimed) -> Any:
        update = self._parsed.pop(item.update_id, None)
        if update is None:  # recorded by another process or an earlier run
            update = Update.model_validate(item.payload, context={"bot": self.bot})
        return await self.dp.feed_update(self.bot, update)

    async def _tick(self) -> None:
        """Heartbeat: renew the leases in flight; start urgent updates other processes recorded for our chats."""
        next_renew = time.monotonic() + self.inbox.lease_seconds / 4
        while True:
            await asyncio.sleep(self.tick_interval)
            if not self._claimed:
                next_renew = time.monotonic() + self.inbox.lease_seconds / 4
                continue
            try:
                if time.monotonic() >= next_renew:
                    next_renew = time.monotonic() + self.inbox.lease_seconds / 4
                    held = list(self._claimed)
                    kept = await self.inbox.renew(held)
                    for lost in set(held) - kept:
                        if lost in self._claimed:  # not finished meanwhile: its lease ran out and someone took it
                            log.error("lost the lease of update %s (the database was out of reach for too long)",
                                      lost)
                if not self._closing:
                    keys = sorted({item.chat_key for item, _ in self._claimed.values()})
                    for update_id, key in await self.inbox.urgent_for(keys):
                        self._start_urgent(update_id, key)
            except Exception:  # the database may be down for a moment
                log.warning("inbox heartbeat failed", exc_info=True)

    async def drain(self, timeout: float) -> None:
        """Stop taking work; let answers in flight finish for up to `timeout` s; give back the rest."""
        self._closing = True
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        workers = list(self._workers.values()) + list(self._urgent_tasks.values())
        if workers:
            log.info("waiting up to %.0f s for %d answers in flight", timeout, len(self._claimed))
            _, late = await asyncio.wait(workers, timeout=timeout or None)
            for worker in late:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if self._ticker is not None:  # the heartbeat runs until the last answer is done
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker


async def poll(bot: Bot, pump: UpdatePump, stop: asyncio.Event, *, timeout: int = 25,
               allowed_updates: list[str] | None = None, answered: asyncio.Event | None = None) -> None:
    """Long polling: an update is confirmed to Telegram (the next offset) only after the inbox holds it.

    Returns as soon as `stop` is set, whatever Telegram or the database are doing: what was fetched but not yet
    recorded is not confirmed, so Telegram sends it again to the next run. The first call does not wait for new
    updates: it brings what queued while the bot was down at once, then sets `answered` (also set when polling
    ends first), which is when the bot's warm-up begins.
    """
    try:
        await _poll(bot, pump, stop, timeout, allowed_updates, answered)
    finally:
        if answered is not None:
            answered.set()


async def _poll(bot: Bot, pump: UpdatePump, stop: asyncio.Event, timeout: int, allowed_updates: list[str] | None,
                answered: asyncio.Event | None) -> None:
    offset: int | None = None
    backoff = 1.0
    wait = 0
    while not stop.is_set():
        fetch = await _unless_stopped(bot.get_updates(offset=offset, timeout=wait, allowed_updates=allowed_updates,
                                                      request_timeout=wait + 10), stop)
        if fetch is None:
            return
        wait = timeout
        if answered is not None:
            answered.set()
        try:
            updates = fetch.result()
        except TelegramRetryAfter as exc:
            await _pause(stop, exc.retry_after)
            continue
        except Exception as exc:  # noqa: BLE001 - network, 5xx: wait and poll again
            log.warning("getUpdates failed (%s); retrying in %.0f s", type(exc).__name__, backoff)
            await _pause(stop, backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        if not updates:
            continue
        raw = [u.model_dump(mode="json", exclude_none=True, by_alias=True) for u in updates]
        while True:
            recorded = await _unless_stopped(pump.submit(raw, updates), stop)
            if recorded is None:
                return  # stopping with the database out of reach: unconfirmed, so Telegram keeps them
            if recorded.exception() is None:
                break
            # not recorded means not confirmed: keep trying
            log.error("could not record %d updates (%s); retrying", len(raw), recorded.exception())
            await _pause(stop, 1.0)
        offset = max(u.update_id for u in updates) + 1


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> asyncio.Task[T] | None:
    """Run `work` until it ends (its finished task) or `stop` is set first (None; the work is cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)  # a unit of work that already started may still finish: harmless
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # its outcome no longer matters
    return None


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
