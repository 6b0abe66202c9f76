"""Cost of `adaptbot eval` over the turns it runs, and how well it overlaps a slow model.

    .venv/bin/python bench/bench_eval.py [--runs 200]

Measured in the same run, the same brain, a scripted OpenAI-compatible server on loopback:
  1. instant model: `--runs` turns through `Brain.start_turn` directly (the baseline) vs the same number of runs
     through the evaluation (checks, grading, aggregation, report): throughput ratio, target >= 0.8. Wall and
     process CPU time, interleaved, best of 3 (the machine is shared: CPU time is the steadier figure);
  2. a model that takes 0.5 s: 48 runs at concurrency 8, wall time vs the ideal runs x 0.5 / 8 (target <= 1.3x),
     and vs the same turns gathered under a plain semaphore (the baseline of this run).
The scripted server runs in this process, so its CPU counts on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.fakes

from evals.cases import parse_cases
from evals.metrics import Prices
from evals.report import build_report
from evals.runner import EvalMode, run_eval
from tests.fakes.openai_server import ScriptedOpenAI

ANSWER = "The Pro plan costs 5 400 RUB a month; a year paid in advance gets 20% off."
CASES = "\n".join(
    f'{{"id": "c{i}", "question": "How much is plan {i} per month?", "expected": "5400", "match": "number"}}'
    for i in range(20))


async def main(runs: int) -> None:
    from bot.app import create_services
    from bot.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        async with ScriptedOpenAI(default=lambda body: ANSWER) as server:
            settings = load_settings(data_dir=Path(tmp), openai_api_key="bench", openai_base_url=server.base_url,
                                     openai_model="scripted", openai_max_retries=0, rate_limit_per_minute=0)
            services = await create_services(settings)
            brain = services.brain
            cases = parse_cases(CASES)
            mode = EvalMode("prompt", "cloud")

            async def one(question: str) -> None:
                async for _ in brain.start_turn(level="prompt", model="cloud", history=[], text=question):
                    pass

            async def direct(n: int, concurrency: int = 1) -> tuple[float, float]:
                gate = asyncio.Semaphore(concurrency)

                async def gated(question: str) -> None:
                    async with gate:
                        await one(question)

                wall, cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(*(gated(cases[i % len(cases)].question) for i in range(n)))
                return time.perf_counter() - wall, time.process_time() - cpu

            async def evaluation(n: int, concurrency: int = 1) -> tuple[float, float]:
                wall, cpu = time.perf_counter(), time.process_time()
                repeats = max(1, n // len(cases))
                result = await run_eval(brain, cases, [mode], repeats=repeats, concurrency=concurrency)
                build_report(result, [mode.name], repeats=repeats, target=0.8, prices=Prices())
                return time.perf_counter() - wall, time.process_time() - cpu

            await direct(20)  # warm-up: imports, the client's connection pool, the language model of the checks
            await evaluation(20)
            pairs = [(await direct(runs), await evaluation(runs)) for _ in range(3)]
            base_wall, base_cpu = min(p[0][0] for p in pairs), min(p[0][1] for p in pairs)
            ours_wall, ours_cpu = min(p[1][0] for p in pairs), min(p[1][1] for p in pairs)
            print(f"1. instant model, {runs} runs: direct start_turn {base_wall / runs * 1e3:6.2f} ms/run "
                  f"({base_cpu / runs * 1e3:.2f} ms CPU) | eval {ours_wall / runs * 1e3:6.2f} ms/run "
                  f"({ours_cpu / runs * 1e3:.2f} ms CPU) | throughput ratio wall {base_wall / ours_wall:.2f}, "
                  f"CPU {base_cpu / ours_cpu:.2f} (target >= 0.8)")

            server.delay = 0.5
            slow_runs, concurrency = 48, 8
            base_wall, _ = await direct(slow_runs, concurrency)
            wall, _ = await evaluation(slow_runs, concurrency)
            ideal = slow_runs * 0.5 / concurrency
            print(f"2. 0.5 s model, {slow_runs} runs at concurrency {concurrency}: eval wall {wall:.2f} s | "
                  f"ideal {ideal:.2f} s: ratio {wall / ideal:.2f}x (target <= 1.3) | plain gather {base_wall:.2f} s: "
                  f"ratio {wall / base_wall:.2f}x")
            await services.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    asyncio.run(main(parser.parse_args().runs))
