"""The bot's evaluation job: one at a time per bot process, in the background, cancellable, closed at shutdown.

The job runs `evals.job.run_job` (the code `adaptbot eval` runs); the handler only renders what it reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(eq=False)
class EvalJob:
    chat_id: int
    user_id: int
    done: int = 0
    total: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


class EvalBusy(Exception):
    """An evaluation is running already."""

    def __init__(self, job: EvalJob) -> None:
        super().__init__("an evaluation is running")
        self.job = job


class EvalJobs:
    """Holds the running evaluation, if any."""

    def __init__(self, shutdown_grace: float = 5.0) -> None:
        self.current: EvalJob | None = None
        self.shutdown_grace = shutdown_grace
        self.closing = False

    def start(self, chat_id: int, user_id: int, run: Callable[[EvalJob], Awaitable[None]]) -> EvalJob:
        if self.current is not None:
            raise EvalBusy(self.current)
        if self.closing:
            raise EvalBusy(EvalJob(chat_id, user_id))
        job = EvalJob(chat_id, user_id)
        self.current = job
        job.task = asyncio.create_task(self._run(job, run), name="eval")
        return job

    async def _run(self, job: EvalJob, run: Callable[[EvalJob], Awaitable[None]]) -> None:
        try:
            await run(job)
        except asyncio.CancelledError:
            pass  # reported by the job itself
        except Exception:
            log.exception("evaluation job failed")
        finally:
            self.current = None

    def stop(self) -> EvalJob | None:
        job = self.current
        if job is not None and job.task is not None:
            job.task.cancel()
        return job

    async def aclose(self) -> None:
        self.closing = True
        job = self.stop()
        if job is not None and job.task is not None:
            await asyncio.wait([job.task], timeout=self.shutdown_grace)
