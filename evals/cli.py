"""`adaptbot eval CASES`: every chosen mode on the team's cases; exit 0 when a mode meets the target, 1 when none
does, 2 for bad input."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from evals.cases import CasesError, load_cases


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adaptbot eval",
                                description="Measure levels and models on your own cases (JSONL or CSV).")
    p.add_argument("cases", type=Path, help="cases file: one JSON object per line, or CSV with the same columns")
    p.add_argument("--mode", action="append", default=[], metavar='"LEVEL MODEL"',
                   help="what /mode takes, repeatable (default: every level on the default model)")
    p.add_argument("--repeats", type=int, default=3, help="run everything N times (default 3): stability counts")
    p.add_argument("--concurrency", type=int, default=4, help="turns at once (default 4; local models queue)")
    p.add_argument("--judge", default=None, metavar="MODEL|none",
                   help="model that grades `judge` cases (default: cloud when configured; none: ungraded)")
    p.add_argument("--target", type=float, default=0.8, help="accuracy the recommended mode must reach (0.8)")
    p.add_argument("--out", type=Path, default=None, help="report directory (default DATA_DIR/eval/<time>)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    return p


def check_args(args: argparse.Namespace, max_repeats: int | None = None) -> str | None:
    """What is wrong with the numbers of an evaluation's flags (the CLI's and `/eval`'s), or None."""
    if args.repeats < 1 or (max_repeats is not None and args.repeats > max_repeats):
        return f"--repeats must be between 1 and {max_repeats}" if max_repeats else "--repeats must be >= 1"
    if args.concurrency < 1:
        return "--concurrency must be >= 1"
    if not 0 <= args.target <= 1:
        return "--target must be between 0 and 1"
    return None


def main(argv: list[str], settings: Any) -> int:
    args = parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"adaptbot eval: {problem}", file=sys.stderr)
        return 2
    try:
        cases = load_cases(args.cases)
    except FileNotFoundError:
        print(f"adaptbot eval: no such file: {args.cases}", file=sys.stderr)
        return 2
    except CasesError as exc:
        print(f"adaptbot eval: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, cases, settings))


async def _run(args: argparse.Namespace, cases: list, settings: Any) -> int:
    from bot.app import create_services
    from evals.job import EvalSpec, EvalSpecError, run_job
    from evals.report import recommendation_text, summary_table

    services = await create_services(settings)
    try:
        try:
            spec = EvalSpec.build(services, modes=args.mode, repeats=args.repeats, concurrency=args.concurrency,
                                  judge=args.judge, target=args.target)
        except EvalSpecError as exc:
            print(f"adaptbot eval: {exc}", file=sys.stderr)
            return 2
        out_dir = args.out or settings.data_dir / "eval" / _stamp()
        bar = _ProgressBar(enabled=sys.stderr.isatty() or not args.json)
        try:
            report, paths = await run_job(services, spec, cases, out_dir, progress=bar.update)
        finally:
            bar.close()
    finally:
        await services.aclose()
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(summary_table(report))
        print()
        print(recommendation_text(report))
        print(f"\nreport: {paths['md']}\nchart:  {paths['png']}")
    return 0 if report["recommendation"].get("met_target") else 1


def _stamp() -> str:
    import datetime

    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


class _ProgressBar:
    """tqdm on stderr (cases done / total, ETA); stdout stays clean for --json."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self._enabled = enabled

    def update(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
