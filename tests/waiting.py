"""Waiting for state no fake announces (the database, the pump, a worker thread, the log)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def until(check: Callable[[], object], timeout: float = 60.0, interval: float = 0.02) -> None:
    """Re-check `check()` (a plain or a coroutine function) every `interval` seconds until it returns something
    true; TimeoutError after `timeout` seconds."""

    async def loop() -> None:
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)

    await asyncio.wait_for(loop(), timeout)
