"""One evaluation job, shared by `adaptbot eval` and the bot's `/eval`: resolve the spec, run, write the report."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.backends.cloud import CloudBackend
from agents.errors import AgentsError
from evals.cases import Case
from evals.judge import Judge
from evals.metrics import Prices
from evals.report import build_report, write_report
from evals.runner import EvalMode, Progress, parse_modes, run_eval


class EvalSpecError(ValueError):
    """An evaluation that cannot start: unknown mode or judge, bad prices."""


@dataclass(slots=True)
class EvalSpec:
    modes: list[EvalMode]
    repeats: int
    concurrency: int
    judge: Judge | None
    target: float
    prices: Prices

    @classmethod
    def build(cls, services: Any, *, modes: Sequence[str], repeats: int = 3, concurrency: int = 4,
              judge: str | None = None, target: float = 0.8) -> EvalSpec:
        brain, settings, chat = services.brain, services.settings, services.chat
        default = (chat.default.level, chat.default.model)
        try:
            parsed = parse_modes(brain, modes, default)
        except AgentsError as exc:
            raise EvalSpecError(str(exc)) from None
        try:
            prices = Prices.parse(settings.eval_prices)
        except ValueError as exc:
            raise EvalSpecError(str(exc)) from None
        return cls(parsed, repeats, concurrency, _judge(services, judge), target, prices)


def _judge(services: Any, name: str | None) -> Judge | None:
    settings = services.settings
    if name is not None and name.lower() == "none":
        return None
    if name is None:
        if settings.openai_api_key is None:
            return None  # no cloud model configured: judge cases stay ungraded, the report says so
        name = CloudBackend.name
    models = services.brain.models
    if name not in models:
        raise EvalSpecError(f"unknown judge model {name!r}; models: {', '.join(models.names())}, or none")
    try:
        model = models.get(name).chat_model()
    except AgentsError as exc:
        raise EvalSpecError(f"judge model {name!r} is unavailable: {exc}") from None
    return Judge(model, name, settings.data_dir / "eval" / "judge_cache.jsonl")


async def run_job(services: Any, spec: EvalSpec, cases: Sequence[Case], out_dir: Path, *,
                  progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    runs = await run_eval(services.brain, cases, spec.modes, repeats=spec.repeats, concurrency=spec.concurrency,
                          judge=spec.judge, progress=progress)
    report = build_report(runs, [m.name for m in spec.modes], repeats=spec.repeats, target=spec.target,
                          prices=spec.prices)
    paths = await asyncio.to_thread(write_report, report, out_dir)  # matplotlib and file writes: off the loop
    return report, paths
