"""What a run is worth: the match of one answer, and per mode the figures that decide the next level.

The symptom checks come from `agents.checks` (the live guards call the same functions).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.checks.numbers import extract_numbers, invented_numbers
from agents.checks.refusal import is_refusal
from agents.checks.text import normalize
from evals.cases import Case

# The ladder: a team should not climb higher than its task needs.
LADDER = {"zero-shot": 0, "prompt": 1, "agent": 2, "rag": 2}
FINETUNED_RANK = 3
_CITATION = re.compile(r"\[\d{1,2}\]")


@dataclass(slots=True)
class Run:
    """One answer to one case on one mode, with what its checks found."""

    case: str
    mode: str
    repeat: int
    answer: str
    passed: bool | None  # None: ungraded (no judge, or the judge failed)
    checks: dict[str, Any]
    latency_s: float
    tokens_in: int = 0
    tokens_out: int = 0
    tags: tuple[str, ...] = ()
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = {"case": self.case, "mode": self.mode, "repeat": self.repeat, "answer": self.answer,
                "passed": self.passed, "checks": self.checks, "latency_s": round(self.latency_s, 3)}
        if self.error:
            data["error"] = self.error
        return data


def match(case: Case, answer: str) -> bool | None:
    """Deterministic match of an answer against a case; None for `judge` cases (graded elsewhere)."""
    if case.match == "judge":
        return None
    if case.match == "refusal":
        return is_refusal(answer)
    if case.match == "regex":
        return any(re.search(pattern, answer, re.IGNORECASE | re.MULTILINE) for pattern in case.expected)
    if case.match == "number":
        return all(numbers_match(expected, answer) for expected in case.expected)
    said = normalize(answer)
    if case.match == "exact":
        return any(normalize(expected) == said for expected in case.expected)
    return all(normalize(expected) in said for expected in case.expected)  # contains: every piece is there


def numbers_match(expected: str, answer: str) -> bool:
    """Every figure of `expected` is stated in the answer, in any equivalent form (`1 500` = `1500`, `15 %`)."""
    return bool(extract_numbers(expected)) and not invented_numbers(expected, [answer])


def is_ungrounded(answer: str) -> bool:
    """A rag answer that cites no source and is not a refusal."""
    return not _CITATION.search(answer) and not is_refusal(answer)


def mode_rank(mode: str) -> int:
    level, _, model = mode.partition(" ")
    if model.startswith("finetuned:"):
        return FINETUNED_RANK
    return LADDER.get(level, 2)


def wilson(successes: int, n: int) -> list[float] | None:
    """95% Wilson score interval of a proportion (scipy's implementation); None when nothing was graded."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


def _share(flags: Iterable[bool]) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 4) if flags else None


@dataclass(slots=True)
class Prices:
    """Per-million-token prices by model name (`EVAL_PRICES="cloud=0.15/0.6,local=0/0"`)."""

    table: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> Prices:
        table: dict[str, tuple[float, float]] = {}
        for item in (spec or "").split(","):
            if not item.strip():
                continue
            name, _, price = item.partition("=")
            price_in, _, price_out = price.partition("/")
            try:
                table[name.strip()] = (float(price_in), float(price_out or price_in))
            except ValueError:
                problem = f"EVAL_PRICES: cannot read {item.strip()!r}; write model=IN/OUT per million tokens"
                raise ValueError(problem) from None
        return cls(table)

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        if model not in self.table:
            return None
        price_in, price_out = self.table[model]
        return round((tokens_in * price_in + tokens_out * price_out) / 1_000_000, 6)


def summarize(mode: str, runs: Sequence[Run], repeats: int, prices: Prices | None = None) -> dict[str, Any]:
    """The per-mode figures of the report (names fixed by the JSON schema of the evaluation issue)."""
    level, _, model = mode.partition(" ")
    graded = [r for r in runs if r.passed is not None]
    passed = sum(1 for r in graded if r.passed)
    by_repeat = []
    for repeat in range(repeats):
        these = [r for r in graded if r.repeat == repeat]
        by_repeat.append(round(sum(1 for r in these if r.passed) / len(these), 4) if these else None)
    outcomes: dict[str, list[bool]] = defaultdict(list)
    for r in graded:
        outcomes[r.case].append(bool(r.passed))
    stability = [Counter(v).most_common(1)[0][1] / len(v) for v in outcomes.values()]
    tags: dict[str, list[Run]] = defaultdict(list)
    for r in graded:
        for tag in r.tags:
            tags[tag].append(r)
    tokens_in = sum(r.tokens_in for r in runs)
    tokens_out = sum(r.tokens_out for r in runs)
    answered = [r for r in runs if r.error is None]
    return {
        "mode": mode, "level": level, "model": model,
        "cases": len({r.case for r in runs}), "runs": len(runs),
        "accuracy": round(passed / len(graded), 4) if graded else None,
        "accuracy_ci": wilson(passed, len(graded)),
        "accuracy_by_repeat": by_repeat,
        "stability": round(sum(stability) / len(stability), 4) if stability else None,
        "invented_numbers": _share(bool(r.checks.get("invented_numbers")) for r in answered),
        "wrong_language": _share(bool(r.checks.get("wrong_language")) for r in answered),
        "loops": _share(bool(r.checks.get("loops")) for r in answered),
        "ungrounded": (_share(bool(r.checks.get("ungrounded")) for r in answered) if level == "rag" else None),
        "errors": sum(1 for r in runs if r.error is not None),
        "ungraded": len(runs) - len(graded),
        "latency_p50_s": percentile([r.latency_s for r in answered], 0.5),
        "latency_p95_s": percentile([r.latency_s for r in answered], 0.95),
        "tokens_in": tokens_in, "tokens_out": tokens_out,
        "cost": prices.cost(model, tokens_in, tokens_out) if prices else None,
        "by_tag": {tag: {"accuracy": round(sum(1 for r in rs if r.passed) / len(rs), 4), "runs": len(rs)}
                   for tag, rs in sorted(tags.items())},
    }


# What the article suggests for each dominant symptom.
ADVICE = {
    "invented_numbers": "the answers invent numbers: ground them in dated sources (rag)",
    "wrong_language": "the answers switch language: a stricter prompt, then fine-tuning on answers in the language",
    "loops": "the answers loop: a stricter prompt and repetition penalties, then fine-tuning",
    "ungrounded": "rag answers cite no source: tighten the rag prompt or add the missing documents",
    "instability": "the outcome changes between repeats: lower the temperature or make the prompt stricter",
    "accuracy": "no symptom dominates: the model lacks the skill; climb a level (agent/rag for facts and tools, "
                "fine-tuning for format and style)",
}


def recommend(modes: Sequence[Mapping[str, Any]], target: float) -> dict[str, Any]:
    """The lowest rung (then the cheapest) whose lower accuracy bound reaches the target; else the best and why."""
    ordered = sorted(modes, key=lambda m: (mode_rank(m["mode"]), m["cost"] if m["cost"] is not None else 0.0))
    for m in ordered:
        if m["accuracy_ci"] is not None and m["accuracy_ci"][0] >= target:
            return {"mode": m["mode"], "met_target": True,
                    "reason": (f"the lowest level whose 95% lower bound ({m['accuracy_ci'][0]:.2f}) reaches the "
                               f"target {target:.2f}")}
    graded = [m for m in modes if m["accuracy"] is not None]
    if not graded:
        return {"mode": None, "met_target": False, "symptom": None,
                "reason": "nothing was graded: give the cases an expected answer or a judge"}
    best = max(graded, key=lambda m: (m["accuracy"], -mode_rank(m["mode"])))
    symptom = dominant_symptom(best)
    return {"mode": best["mode"], "met_target": False, "symptom": symptom,
            "reason": (f"no mode reaches the target {target:.2f}; the best is {best['mode']} "
                       f"(accuracy {best['accuracy']:.2f}): {ADVICE[symptom]}")}


def dominant_symptom(mode: Mapping[str, Any]) -> str:
    shares = {name: mode.get(name) or 0.0 for name in ("invented_numbers", "wrong_language", "loops", "ungrounded")}
    shares["instability"] = 1.0 - (mode.get("stability") or 1.0)
    name, share = max(shares.items(), key=lambda item: item[1])
    return name if share > 0 else "accuracy"
