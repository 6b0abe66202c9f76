"""Run cases on modes through `Brain.start_turn`, the chats' own code path, and check every answer.

A case is a fresh chat: its own `history` (if any) and nothing else; no chat's stored memory is read or written.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.checks.language import wrong_language
from agents.checks.numbers import invented_numbers
from agents.checks.repetition import find_loop
from agents.errors import AgentsError
from agents.runtime import Brain
from agents.types import Passages, TextDelta, ToolStep, Usage
from evals.cases import Case
from evals.judge import Judge
from evals.metrics import Run, is_ungrounded, match

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EvalMode:
    level: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.level} {self.model}"


def parse_modes(brain: Brain, specs: Sequence[str], default: tuple[str, str]) -> list[EvalMode]:
    """`--mode` values as `/mode` takes them (levels and/or a model, any order); none: every level on the default."""
    if not specs:
        return [EvalMode(level, default[1]) for level in brain.levels.names()]
    modes: list[EvalMode] = []
    for spec in specs:
        level, model = brain.parse_mode(spec.split(), *default)
        mode = EvalMode(level, model)
        if mode not in modes:
            modes.append(mode)
    return modes


@dataclass(slots=True)
class _Answer:
    text: str
    evidence: list[str]
    tokens_in: int
    tokens_out: int
    latency_s: float
    error: str | None


async def _ask(brain: Brain, mode: EvalMode, case: Case) -> _Answer:
    parts: list[str] = []
    evidence: list[str] = []
    tokens_in = tokens_out = 0
    started = time.perf_counter()
    error = None
    try:
        async for event in brain.start_turn(level=mode.level, model=mode.model, history=list(case.history),
                                            text=case.question, lang=case.lang):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, ToolStep):
                evidence.append(f"{event.input}\n{event.output}")
            elif isinstance(event, Passages):
                evidence.extend(event.texts)
            elif isinstance(event, Usage):
                tokens_in += event.prompt_tokens
                tokens_out += event.completion_tokens
    except AgentsError as exc:  # the model's or provider's failure: a failed run, reported, not a crash
        error = str(exc) or type(exc).__name__
    return _Answer("".join(parts), evidence, tokens_in, tokens_out, time.perf_counter() - started, error)


async def _run_one(brain: Brain, mode: EvalMode, case: Case, repeat: int, judge: Judge | None) -> Run:
    answer = await _ask(brain, mode, case)
    text = answer.text
    sources = [case.question, *case.expected, *(turn.content for turn in case.history), *answer.evidence]
    checks: dict[str, object] = {
        "invented_numbers": invented_numbers(text, sources),
        "wrong_language": bool(text.strip()) and wrong_language(text, case.lang),
        "loops": find_loop(text) is not None,
    }
    if mode.level == "rag":
        checks["ungrounded"] = bool(text.strip()) and is_ungrounded(text)
    passed: bool | None
    if answer.error is not None:
        passed = False
        checks["match"] = False
    elif case.match == "judge":
        passed = await judge.grade(case, text) if judge is not None else None
        checks["match"] = passed
    else:
        passed = match(case, text)
        checks["match"] = passed
    return Run(case=case.id, mode=mode.name, repeat=repeat, answer=text, passed=passed, checks=checks,
               latency_s=answer.latency_s, tokens_in=answer.tokens_in, tokens_out=answer.tokens_out,
               tags=case.tags, error=answer.error)


async def run_eval(brain: Brain, cases: Sequence[Case], modes: Sequence[EvalMode], *, repeats: int = 3,
                   concurrency: int = 4, judge: Judge | None = None, progress: Progress | None = None,
                   seed: int = 0) -> list[Run]:
    """Every case on every mode, `repeats` times; at most `concurrency` turns at once (local models queue anyway)."""
    jobs = [(mode, case, repeat) for repeat in range(repeats) for mode in modes for case in cases]
    # Interleave modes so a slow mode does not sit at the end of the progress bar
    random.Random(seed).shuffle(jobs)
    total = len(jobs)
    done = 0
    gate = asyncio.Semaphore(max(1, concurrency))
    runs: list[Run | None] = [None] * total

    async def work(index: int, mode: EvalMode, case: Case, repeat: int) -> None:
        nonlocal done
        async with gate:
            runs[index] = await _run_one(brain, mode, case, repeat, judge)
        done += 1
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    tasks = [asyncio.create_task(work(i, *job)) for i, job in enumerate(jobs)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    order = {mode.name: i for i, mode in enumerate(modes)}
    case_order = {case.id: i for i, case in enumerate(cases)}
    finished = [r for r in runs if r is not None]
    finished.sort(key=lambda r: (order[r.mode], r.repeat, case_order[r.case]))
    return finished
