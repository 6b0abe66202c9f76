"""Calculator throughput against baselines measured in the same run, and worst-case latency vs the 100 ms target.

    .venv/bin/python bench/bench_calculator.py [--seconds 1.0]

Baselines, on the same expressions: `ast.parse` alone (the floor of any AST-based evaluator) and CPython's
own `compile` + `eval` with no builtins (what the unsafe one-liner costs; only fixed, trusted strings here).
"""

from __future__ import annotations

import argparse
import ast
import math
import statistics
import time
from collections.abc import Callable

from agents.tools.calculator import CalculatorError, calculate

# Written so that Python can evaluate them too (the eval baseline); `^` and `%` forms are timed separately.
TYPICAL = [
    "(1.5 + 2) * 3**2",
    "0.1 + 0.2",
    "sqrt(2) * pi",
    "factorial(20) / factorial(18)",
    "round(1234.5678, 2)",
    "2**100 - 1",
    "log(1000) + ln(e)",
    "1/3 + 1/6",
    "-(4 - 7) * 12.25 / 5",
    "abs(floor(-2.5)) + ceil(2.1)",
]
CALCULATOR_ONLY = ["15% of 2400", "2400 * 15%", "2^10", "50% - 10"]
WORST_CASES = [
    "9**9**9**9",
    "10**10**10",
    "factorial(400)",
    "factorial(400) * factorial(399)",
    "2**3000",
    "1.0001**10000",
    "-" * 499 + "1",
    "1+" * 249 + "1",
    "(" * 40 + "1" + ")" * 40,
    "sin(" * 40 + "1" + ")" * 40,
    "(1/3+" * 40 + "1" + ")" * 40,
    "9" * 500,
    "round(1/3,100)*" * 30 + "1",
    "1/7**" * 80 + "1",
    "factorial(400)/" * 31 + "1",
    "1" + "%" * 39,
    "__import__('os').system('echo')",
    "-" * 100_000,
]
NAMESPACE = {"__builtins__": {}, "sqrt": math.sqrt, "pi": math.pi, "e": math.e, "factorial": math.factorial,
             "round": round, "log": math.log10, "ln": math.log, "abs": abs, "floor": math.floor, "ceil": math.ceil}


def rate(fn: Callable[[str], object], expressions: list[str], seconds: float) -> float:
    """Evaluations per second, cycling through `expressions` for about `seconds`."""
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for expression in expressions:
            fn(expression)
        count += len(expressions)
    return count / (time.perf_counter() - started)


def safe(expression: str) -> object:
    try:
        return calculate(expression)
    except CalculatorError as exc:
        return exc


def python_eval(expression: str) -> object:
    return eval(compile(expression, "<bench>", "eval"), NAMESPACE)  # baseline only: fixed, trusted strings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    for expression in TYPICAL:  # same inputs, same meaning (up to float vs exact formatting)
        ours, theirs = float(calculate(expression)), float(python_eval(expression))  # type: ignore[arg-type]
        assert math.isclose(ours, theirs, rel_tol=1e-9), (expression, ours, theirs)

    ours = rate(safe, TYPICAL, args.seconds)
    parse_only = rate(lambda s: ast.parse(s, mode="eval"), TYPICAL, args.seconds)
    unsafe = rate(python_eval, TYPICAL, args.seconds)
    extra = rate(safe, CALCULATOR_ONLY, args.seconds)
    print(f"calculator, typical expressions : {ours:10,.0f} evals/s")
    print(f"  baseline ast.parse only       : {parse_only:10,.0f} /s   ratio calculator/baseline = "
          f"{ours / parse_only:.2f}")
    print(f"  baseline compile+eval (unsafe): {unsafe:10,.0f} /s   ratio calculator/baseline = "
          f"{ours / unsafe:.2f}")
    print(f"calculator, percent and ^ forms : {extra:10,.0f} evals/s")

    latencies: list[tuple[float, str]] = []
    for expression in WORST_CASES:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            safe(expression)
            runs.append(time.perf_counter() - started)
        latencies.append((max(runs), expression))
    worst, which = max(latencies)
    median = statistics.median(t for t, _ in latencies)
    print(f"worst cases ({len(WORST_CASES)} hostile/huge inputs x5): median {median * 1e3:.2f} ms, "
          f"max {worst * 1e3:.2f} ms on {which[:40]!r}")
    print(f"100 ms target: {'met' if worst < 0.1 else 'MISSED'} (max/target = {worst / 0.1:.3f})")


if __name__ == "__main__":
    main()
