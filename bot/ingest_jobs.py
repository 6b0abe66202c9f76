"""Background ingest jobs: each upload runs as its own task, so the admin's chat stays responsive meanwhile.

At most `max_jobs` uploads are in progress at once (more are refused); one runs at a time (parsing and
embedding are CPU-bound), the others wait their turn. A job is cancelled cooperatively: the knowledge base
checks the job's event between stages and before it writes anything, so a cancelled upload leaves it unchanged.
At shutdown every job is cancelled and says so: a restart abandons uploads in progress (the admin sends the file
again); none is re-run, since the update that carried the file finished when its job started.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(eq=False)
class IngestJob:
    """One upload in progress: which chat it belongs to, its file name, and how to stop it."""

    job_id: int
    chat_id: int
    name: str
    cancel: threading.Event = field(default_factory=threading.Event)  # read by the knowledge base's threads
    indexing: bool = False  # inside the knowledge base: stopped by `cancel` only, never by cancelling the task
    task: asyncio.Task[None] | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


class TooManyJobs(Exception):
    """`max_jobs` uploads are in progress already."""


class IngestJobs:
    """The uploads in progress of one bot process; bounded, cancellable, closed at shutdown."""

    def __init__(self, max_jobs: int = 4, shutdown_grace: float = 10.0) -> None:
        self.max_jobs = max_jobs
        self.shutdown_grace = shutdown_grace
        self.closing = False
        self._jobs: dict[int, IngestJob] = {}
        self._ids = itertools.count(1)
        self._turn = asyncio.Lock()  # one ingest at a time

    def __len__(self) -> int:
        return len(self._jobs)

    def start(self, chat_id: int, name: str, run: Callable[[IngestJob], Awaitable[None]]) -> IngestJob:
        """Start `run(job)` in the background; raises TooManyJobs when `max_jobs` are in progress."""
        if self.closing or len(self._jobs) >= self.max_jobs:
            raise TooManyJobs()
        job = IngestJob(next(self._ids), chat_id, name)
        self._jobs[job.job_id] = job
        job.task = asyncio.create_task(self._run(job, run), name=f"ingest-{job.job_id}")
        return job

    async def _run(self, job: IngestJob, run: Callable[[IngestJob], Awaitable[None]]) -> None:
        try:
            await run(job)
        except asyncio.CancelledError:
            pass  # the job reported it; a background task has nobody to propagate to
        except Exception:
            log.exception("ingest job %s (%s) failed", job.job_id, job.name)
        finally:
            self._jobs.pop(job.job_id, None)

    def waiting(self, job: IngestJob) -> int:
        """How many jobs started before `job` are still in progress (it runs when they are done)."""
        return sum(1 for other in self._jobs if other < job.job_id)

    @property
    def turn(self) -> asyncio.Lock:
        """Held by the job that is ingesting; the others wait for it (cancelling a waiting task is safe)."""
        return self._turn

    def tasks(self) -> list[asyncio.Task[None]]:
        """The tasks of the jobs in progress (to wait for them)."""
        return [job.task for job in self._jobs.values() if job.task is not None]

    def cancel_chat(self, chat_id: int) -> list[IngestJob]:
        """Cancel every upload of `chat_id`; returns them."""
        jobs = [job for job in self._jobs.values() if job.chat_id == chat_id and not job.cancelled]
        for job in jobs:
            self._cancel(job)
        return jobs

    def _cancel(self, job: IngestJob) -> None:
        job.cancel.set()
        if not job.indexing and job.task is not None:  # waiting or downloading: nothing to undo
            job.task.cancel()

    async def aclose(self) -> None:
        """Shutdown: cancel every job and give them `shutdown_grace` seconds to report it."""
        self.closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            self._cancel(job)
        tasks = [job.task for job in jobs if job.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.shutdown_grace)
        for task in late:  # stuck past the grace period: the knowledge base's write is atomic either way
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
