"""A cap on the turns that run at once, handed out oldest first.

After downtime every chat with a pending update starts at once; without a cap each would call the model in the
same moment (and meet the provider's rate limit). Waiters are served in the order of their key (the update id),
not in the order they happened to reach the queue, so the chats that waited longest go first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Hashable


class TurnSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: list[tuple[float, int, Hashable, asyncio.Future[None]]] = []  # a heap, oldest first
        self._seq = itertools.count()  # ties keep arrival order

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def acquire(self, order: float, key: Hashable) -> None:
        """Wait for a slot; `order` ranks the waiters (lowest first), `key` names this one for `interrupt`."""
        if self.running < self.limit and not self._waiting:
            self.running += 1
            return
        entry = (order, next(self._seq), key, asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        try:
            await entry[3]
        except BaseException:
            if entry[3].done() and not entry[3].cancelled() and entry[3].exception() is None:
                self.release()  # the slot came just as the wait was given up: pass it on
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter, if there is one."""
        while self._waiting:
            future = heapq.heappop(self._waiting)[3]
            if not future.done():
                future.set_result(None)  # the slot passes on; `running` stays as it is
                return
        self.running -= 1

    def interrupt(self, key: Hashable, exc: BaseException) -> bool:
        """Make the waiter named `key` raise `exc` (a /stop while it waits); False when it is not waiting."""
        for entry in self._waiting:
            if entry[2] == key and not entry[3].done():
                entry[3].set_exception(exc)
                return True
        return False
