"""The evaluation report: `report.json` (the schema tools rely on), `report.md` (for people) and `chart.png`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.metrics import Prices, Run, recommend, summarize

SYMPTOMS = ("invented_numbers", "wrong_language", "loops", "ungrounded")


def build_report(runs: Sequence[Run], modes: Sequence[str], *, repeats: int, target: float,
                 prices: Prices | None = None) -> dict[str, Any]:
    summaries = [summarize(mode, [r for r in runs if r.mode == mode], repeats, prices) for mode in modes]
    return {"modes": summaries, "target": target, "recommendation": recommend(summaries, target),
            "runs": [r.as_json() for r in runs]}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def summary_table(report: dict[str, Any]) -> str:
    """A compact fixed-width table (fits a phone in a Telegram <pre> block)."""
    lines = [f"{'mode':<24} {'acc':>4} {'95% CI':>9} {'stab':>4} {'num':>4} {'lang':>4} {'loop':>4}"]
    for m in report["modes"]:
        ci = m["accuracy_ci"]
        ci_text = f"{ci[0] * 100:.0f}-{ci[1] * 100:.0f}" if ci else "—"
        lines.append(f"{m['mode'][:24]:<24} {_pct(m['accuracy']):>4} {ci_text:>9} {_pct(m['stability']):>4} "
                     f"{_pct(m['invented_numbers']):>4} {_pct(m['wrong_language']):>4} {_pct(m['loops']):>4}")
    return "\n".join(lines)


def recommendation_text(report: dict[str, Any]) -> str:
    rec = report["recommendation"]
    if rec["mode"] is None:
        return rec["reason"]
    head = "Recommended" if rec.get("met_target") else "Best so far"
    return f"{head}: {rec['mode']} — {rec['reason']}"


def to_markdown(report: dict[str, Any]) -> str:
    out = ["# Evaluation report", "", recommendation_text(report), "",
           "| mode | accuracy | 95% CI | stability | invented numbers | wrong language | loops | ungrounded | "
           "ungraded | p50 s | p95 s | tokens in/out | cost |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in report["modes"]:
        ci = m["accuracy_ci"]
        out.append(
            f"| {m['mode']} | {_pct(m['accuracy'])} | {f'{ci[0]:.2f}–{ci[1]:.2f}' if ci else '—'} | "
            f"{_pct(m['stability'])} | {_pct(m['invented_numbers'])} | {_pct(m['wrong_language'])} | "
            f"{_pct(m['loops'])} | {_pct(m['ungrounded'])} | {m['ungraded']} | {m['latency_p50_s']} | "
            f"{m['latency_p95_s']} | {m['tokens_in']}/{m['tokens_out']} | "
            f"{'—' if m['cost'] is None else m['cost']} |")
    tags = sorted({tag for m in report["modes"] for tag in m["by_tag"]})
    if tags:
        out += ["", "## By tag", "", "| mode | " + " | ".join(tags) + " |", "|---|" + "---|" * len(tags)]
        for m in report["modes"]:
            cells = [_pct(m["by_tag"][t]["accuracy"]) if t in m["by_tag"] else "—" for t in tags]
            out.append(f"| {m['mode']} | " + " | ".join(cells) + " |")
    failing = [r for r in report["runs"] if r["passed"] is False or any(r["checks"].get(s) for s in SYMPTOMS)]
    out += ["", f"## Failing runs ({len(failing)})", ""]
    for r in failing[:500]:
        failed = [name for name, value in r["checks"].items() if value and name != "match"]
        if r["checks"].get("match") is False:
            failed.insert(0, "match")
        answer = r["answer"].strip().replace("\n", " ")
        out.append(f"- **{r['case']}** · {r['mode']} · repeat {r['repeat']} · failed: {', '.join(failed)}"
                   f"{' · error: ' + r['error'] if r.get('error') else ''}\n  > {answer[:400] or '(empty)'}")
    if len(failing) > 500:
        out.append(f"- ... and {len(failing) - 500} more in report.json")
    return "\n".join(out) + "\n"


def draw_chart(report: dict[str, Any], path: Path) -> None:
    """Accuracy with its interval per mode, and the symptom shares: readable at phone size."""
    # a Figure of its own, not pyplot: pyplot's global state is not safe in the worker threads that draw these
    from matplotlib.figure import Figure

    modes = report["modes"]
    names = [m["mode"] for m in modes]
    fig = Figure(figsize=(9, 1.6 + 0.55 * len(modes)), dpi=110)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    ys = list(range(len(modes)))[::-1]
    acc = [m["accuracy"] or 0 for m in modes]
    err_lo = [(m["accuracy"] or 0) - m["accuracy_ci"][0] if m["accuracy_ci"] else 0 for m in modes]
    err_hi = [m["accuracy_ci"][1] - (m["accuracy"] or 0) if m["accuracy_ci"] else 0 for m in modes]
    left.barh(ys, acc, xerr=[err_lo, err_hi], color="#4C72B0", capsize=3)
    left.axvline(report.get("target", 0.8), color="#C44E52", linestyle="--", linewidth=1)
    left.set_yticks(ys, names, fontsize=9)
    left.set_xlim(0, 1)
    left.set_title("accuracy (95% CI)", fontsize=10)
    width = 0.2
    colors = ["#DD8452", "#55A868", "#8172B3", "#937860"]
    for i, symptom in enumerate(SYMPTOMS):
        values = [m[symptom] or 0 for m in modes]
        right.barh([y + (1.5 - i) * width for y in ys], values, height=width, color=colors[i],
                   label=symptom.replace("_", " "))
    right.set_yticks(ys, [""] * len(ys))
    right.set_xlim(0, 1)
    right.set_title("symptoms (share of answers)", fontsize=10)
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "chart.png"}
    paths["json"].write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    paths["md"].write_text(to_markdown(report), encoding="utf-8")
    draw_chart(report, paths["png"])
    return paths
