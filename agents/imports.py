"""Imports that take long (LangChain, httpx and friends) done off the event loop, once they are needed."""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType

_done: dict[str, ModuleType] = {}


async def import_off_loop(name: str) -> ModuleType:
    """The module `name`, imported in a thread the first time. A module is remembered only once its import has
    finished (it is in sys.modules from the moment its import starts): a caller that comes meanwhile imports in a
    thread too, and that thread, not the event loop, waits on the import lock."""
    module = _done.get(name)
    if module is None:
        module = _done[name] = await asyncio.to_thread(importlib.import_module, name)
    return module
