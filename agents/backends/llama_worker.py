"""One thread that owns one llama.cpp model and serves generation jobs in FIFO order.

A llama context is not safe for concurrent use, and generation is long, blocking C work: so every
llama call happens on this thread, callers wait in a queue (learning their place in it through
`agents.types.notify(Queued(ahead=N))`), and what a job emits streams back to the asyncio caller.
Cancelling the awaiting task stops its job within a token, or drops it unrun if it is still queued.

Items reach the caller in batches, at most one hand-over per `flush_interval` (plus the first item at
once): every hand-over costs the event loop some Python work, and that work holds the GIL the
generating thread needs. Nobody sees 50 ms of batching; a hand-over per token cost 15% of the tokens/s.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agents.errors import ModelCallError
from agents.types import Queued, notify

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

# A job runs on the worker thread: job(llm, emit, cancelled). It calls `emit(item)` for each item the
# caller should receive (in order) and checks `cancelled` between tokens.
Job = Callable[["Llama", Callable[[Any], None], threading.Event], None]

JobStatus = Literal["done", "cancelled", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What happened to one finished job (kept for diagnostics and tests)."""

    id: int
    status: JobStatus
    emitted: int  # items emitted in total
    emitted_after_cancel: int  # items emitted after cancellation was requested


@dataclass(eq=False, slots=True)
class _Ticket:
    id: int
    job: Job
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]]
    cancelled: threading.Event = field(default_factory=threading.Event)
    ahead: int = 0  # last position announced to the caller


class WorkerClosedError(ModelCallError):
    """The worker was shut down before or while serving the request."""


class LlamaWorker:
    """Serve jobs for one lazily loaded `llama_cpp.Llama` on one dedicated thread."""

    def __init__(self, load: Callable[[], Llama], *, name: str = "llama", flush_interval: float = 0.05,
                 on_use: Callable[[LlamaWorker], None] | None = None) -> None:
        self._load = load
        self._on_use = on_use  # told of every request (on the event loop): the loaded-models limit's LRU order
        self._name = name
        self._flush_interval = flush_interval
        self._llm: Llama | None = None
        self._cond = threading.Condition()
        self._pending: collections.deque[_Ticket] = collections.deque()
        self._current: _Ticket | None = None
        self._closed = False
        self._release = False  # free the model and end the thread once nothing is left to do
        self._preload = False
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self.history: collections.deque[JobRecord] = collections.deque(maxlen=256)

    # ----- caller side (event loop) -------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def waiting(self) -> int:
        """Requests queued behind the running one."""
        with self._cond:
            return len(self._pending)

    async def run(self, job: Job) -> AsyncIterator[list[Any]]:
        """Queue `job`, report the queue position while waiting, and yield what it emits, in batches."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(next(self._ids), job, loop, asyncio.Queue())
        if self._on_use is not None:
            self._on_use(self)
        with self._cond:
            if self._closed:
                raise WorkerClosedError("the local model is shutting down")
            self._release = False  # wanted again
            ticket.ahead = len(self._pending) + (self._current is not None)
            self._pending.append(ticket)
            self._ensure_thread()
            self._cond.notify()
        if ticket.ahead:
            notify(Queued(ahead=ticket.ahead))
        try:
            while True:
                kind, value = await ticket.queue.get()
                if kind == "items":
                    yield value
                elif kind == "queued":
                    notify(Queued(ahead=value))
                elif kind == "error":
                    raise value
                else:  # "end"
                    return
        finally:
            # Reached on normal end too, where it is a no-op. On cancellation (`/stop`) or an abandoned
            # stream: a queued job is dropped, a running one stops at its next token.
            ticket.cancelled.set()
            with self._cond:
                if ticket in self._pending:
                    self._pending.remove(ticket)
                    self.history.append(JobRecord(ticket.id, "skipped", 0, 0))
                    self._announce_positions()

    def release(self) -> None:
        """Free the model and end the thread once the work queued now is done (never in the middle of a job);
        a later request starts a new thread, which loads the model again."""
        with self._cond:
            self._release = True
            self._cond.notify_all()

    def preload(self) -> None:
        """Load the model on the worker thread now, before the first request needs it (does not wait).

        A failure is logged; the first request then tries again and reports it to its caller.
        """
        with self._cond:
            if self._closed or self._llm is not None:
                return
            self._preload = True
            self._ensure_thread()
            self._cond.notify()

    def close(self) -> None:
        """Stop accepting work, cancel the running job and drop queued ones; does not wait."""
        with self._cond:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            if self._current is not None:
                self._current.cancelled.set()
            self._cond.notify_all()
        for ticket in dropped:
            _send(ticket, "error", WorkerClosedError("the local model is shutting down"))

    async def aclose(self) -> None:
        """`close()`, then wait until the thread has freed the model."""
        self.close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # ----- worker thread ------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"{self._name}-worker", daemon=True)
            self._thread.start()

    def _announce_positions(self) -> None:
        """Tell each waiting caller how many requests are now ahead of it (call with the lock held)."""
        base = 1 if self._current is not None else 0
        for index, ticket in enumerate(self._pending):
            ahead = base + index
            if ahead != ticket.ahead:
                ticket.ahead = ahead
                _send(ticket, "queued", ahead)

    def _serve(self) -> None:
        llm: Llama | None = None
        try:
            while True:
                with self._cond:
                    while (not self._pending and not self._closed and not self._release
                           and not self._preload):
                        self._cond.wait()
                    if self._closed or (not self._pending and not self._preload):  # closed, or released: done
                        # Taken under the lock: after a release, the next request starts a new thread at once,
                        # which must neither find this model nor wait for this thread.
                        llm, self._llm = self._llm, None
                        if not self._closed:
                            self._release, self._thread = False, None
                        return
                    self._preload = False
                    if not self._pending:
                        ticket = None
                    else:
                        ticket = self._pending.popleft()
                        self._current = ticket
                        self._announce_positions()
                if ticket is None:
                    self._load_ahead()
                    continue
                try:
                    self._run_one(ticket)
                finally:
                    with self._cond:
                        # No announcement here: the next pop does it (nobody hears a passing "0 ahead").
                        self._current = None
        finally:
            # The model is freed on the thread that used it, explicitly rather than at garbage collection.
            if llm is None:  # left through an exception: this thread is the model's only user
                llm, self._llm = self._llm, None
            if llm is not None:
                llm.close()

    def _load_ahead(self) -> None:
        if self._llm is not None:
            return
        try:
            self._llm = self._load()
        except Exception as exc:  # noqa: BLE001 - logged; the first request meets the same error and reports it
            log.warning("the local model could not be loaded in advance: %s", exc)

    def _run_one(self, ticket: _Ticket) -> None:
        emitted = after_cancel = 0
        batch: list[Any] = []
        last_flush = 0.0

        def flush() -> None:
            nonlocal batch, last_flush
            if batch:
                _send(ticket, "items", batch)
                batch, last_flush = [], time.monotonic()

        def emit(item: Any) -> None:
            nonlocal emitted, after_cancel
            emitted += 1
            if ticket.cancelled.is_set():
                after_cancel += 1
            batch.append(item)
            if time.monotonic() - last_flush >= self._flush_interval:
                flush()

        status: JobStatus = "done"
        failure: BaseException | None = None
        if ticket.cancelled.is_set():
            status = "skipped"
        else:
            try:
                if self._llm is None:
                    self._llm = self._load()  # errors reach this caller; the next request tries again
                ticket.job(self._llm, emit, ticket.cancelled)
                flush()
                if ticket.cancelled.is_set():
                    status = "cancelled"
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the waiting caller
                status, failure = "error", exc
        # Recorded before the caller hears the end, so what it reads next is up to date.
        self.history.append(JobRecord(ticket.id, status, emitted, after_cancel))
        if failure is not None:
            _send(ticket, "error", failure)
            if not isinstance(failure, Exception):
                raise failure
        elif status != "skipped":
            _send(ticket, "end", None)


def _send(ticket: _Ticket, kind: str, value: Any) -> None:
    """Hand an item to the caller's event loop (safe from any thread)."""
    try:
        ticket.loop.call_soon_threadsafe(ticket.queue.put_nowait, (kind, value))
    except RuntimeError:  # the caller's loop is closed: nobody is listening any more
        ticket.cancelled.set()
