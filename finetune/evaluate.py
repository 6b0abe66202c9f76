"""The evaluation stage and the gate: the fine-tune against its base, on the team's cases, before it is served.

`--eval CASES` runs the evaluation (`evals/`: the same cases, checks and runner as `adaptbot eval`, through the
brain the chats use) on the base model's GGUF and on each exported GGUF, and records in the manifest what the
fine-tune learned (accuracy on CASES, with 95% intervals) and, with `--eval-general CASES2`, what it forgot
(accuracy on a general set, before and after). `--gate`: a file that is not better than its base on CASES, or
loses more than `--max-forget` on CASES2, is not registered (see `refusals`).

The base's GGUF: a GGUF base is its own file; a transformers base is converted once (into DIR/base-gguf/) by the
export stage's converter, with the fine-tune's own tokenizer files (same vocabulary, same chat template).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetune.data import sha256_file
from finetune.errors import FinetuneError, UsageError

log = logging.getLogger("finetune")

BASE_GGUF_DIR = "base-gguf"
REPORT_DIR = "eval"
LEVELS = ("zero-shot", "prompt", "agent")  # levels that need no knowledge base
DEFAULT_MAX_FORGET = 0.03
# The most faithful of the run's quantizations is the base's: the comparison then counts the fine-tune's own
# quantization loss against it, never the other way round.
BASE_QUANT_ORDER = ("f32", "bf16", "f16", "q8_0", "q6_K", "q5_K_M", "q4_K_M")
# Model names inside the evaluation's own registry (never the bot's): the base and one per exported file.
BASE_MODEL = "base"
# The base files that describe its weights (besides the weights): the rest comes from the fine-tune (tokenizer).
_MODEL_FILES = ("config.json", "generation_config.json")


class GateError(FinetuneError):
    """The gate refused every file (or some): the fine-tune is not better than its base, or it forgot too much."""


@dataclass(frozen=True)
class EvalRequest:
    """What `--eval`, `--eval-general`, `--gate`, `--max-forget`, `--eval-level`, `--eval-repeats` asked for."""

    cases: Path
    general: Path | None = None
    gate: bool = False
    max_forget: float = DEFAULT_MAX_FORGET
    level: str = "zero-shot"
    repeats: int = 3

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cases"], data["general"] = str(self.cases), str(self.general) if self.general else None
        return data


def request_from_args(cases: Path | None, general: Path | None, gate: bool, max_forget: float | None,
                      level: str, repeats: int) -> EvalRequest | None:
    """Check the evaluation flags and load both case files (every bad line listed); None without --eval.

    Raises UsageError before anything runs, so a bad flag never costs a training run.
    """
    if cases is None:
        for flag, given in (("--gate", gate), ("--eval-general", general is not None),
                            ("--max-forget", max_forget is not None)):
            if given:
                raise UsageError(f"{flag} needs --eval CASES: the fine-tune is measured against its base on them")
        return None
    if max_forget is not None and not gate:
        raise UsageError("--max-forget applies to the gate: add --gate")
    if max_forget is not None and general is None:
        raise UsageError("--max-forget limits what is forgotten on a general set: add --eval-general CASES2")
    if max_forget is not None and not 0 <= max_forget <= 1:
        raise UsageError(f"--max-forget must be between 0 and 1 (a share of accuracy), not {max_forget:g}")
    if level not in LEVELS:
        raise UsageError(f"--eval-level must be one of {', '.join(LEVELS)} (rag needs the bot's knowledge base)")
    if repeats < 1:
        raise UsageError("--eval-repeats must be >= 1")
    for flag, path in (("--eval", cases), ("--eval-general", general)):
        if path is not None:
            load(path, flag)
    return EvalRequest(Path(cases), Path(general) if general else None, gate,
                       DEFAULT_MAX_FORGET if max_forget is None else max_forget, level, repeats)


def load(path: Path, flag: str) -> list[Any]:
    """The cases of `path`, validated like `adaptbot eval` does; a UsageError names the flag and every bad line."""
    from evals.cases import CasesError, load_cases

    try:
        cases = load_cases(path)
    except FileNotFoundError:
        raise UsageError(f"{flag}: no such cases file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{flag}: {path} is a directory, not a cases file") from None
    except CasesError as exc:
        raise UsageError(f"{flag} {path}: {exc}") from None
    if all(case.match == "judge" for case in cases):
        raise UsageError(f"{flag} {path}: no case has an expected answer; the fine-tune is compared with its base "
                         "without an LLM judge, so give the cases 'expected' (and a 'match')")
    return cases


def base_quant(quants: list[str]) -> str:
    """The quantization the base is evaluated in: the most faithful of the run's."""
    return next((q for q in BASE_QUANT_ORDER if q in quants), quants[0])


def base_gguf(out: Path, manifest: Any, quants: list[str], pre_tokenizer: str, cache_dir: Path | None) -> Path:
    """The base model as a GGUF: a GGUF base's own file, else the transformers base converted once."""
    source = manifest.dequantized_from.get("path")
    if source:
        if not Path(source).is_file():
            raise UsageError(f"the base GGUF {source} is gone; put it back to evaluate against it")
        return Path(source)
    from finetune.export import export

    quant = base_quant(quants)
    dest = Path(out) / BASE_GGUF_DIR
    target = dest / f"base-{quant}.gguf"
    if target.is_file():
        return target
    staged = dest / "src"
    shutil.rmtree(staged, ignore_errors=True)
    _stage_base(_base_dir(manifest.base), Path(out) / "merged", staged)
    try:
        (exported,) = export(staged, dest, "base", [quant], pre_tokenizer=pre_tokenizer, cache_dir=cache_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return exported.path


def _base_dir(base: str) -> Path:
    """A transformers base as a local directory (a hub id: the snapshot training already downloaded)."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(base))


def _stage_base(base: Path, merged: Path, staged: Path) -> None:
    """The base's weights and config with the fine-tune's tokenizer files (links, no copies of the weights)."""
    staged.mkdir(parents=True)
    for file in base.iterdir():
        if file.is_file() and (file.name in _MODEL_FILES or file.suffix in (".safetensors", ".bin")
                               or file.name.endswith(".index.json")):
            os.symlink(file.resolve(), staged / file.name)
    for file in merged.iterdir():
        if file.is_file() and not (staged / file.name).exists() and file.suffix not in (".safetensors", ".bin") \
                and not file.name.endswith(".index.json"):
            os.symlink(file.resolve(), staged / file.name)


def evaluate(out: Path, request: EvalRequest, files: Mapping[str, Path], base: Path,
             data_dir: Path | None) -> dict[str, Any]:
    """Run both case sets on the base and every file; return the manifest's `evaluation` record."""
    sets = {"cases": load(request.cases, "--eval")}
    if request.general is not None:
        sets["general"] = load(request.general, "--eval-general")
    models = {BASE_MODEL: Path(base), **{quant: Path(path) for quant, path in files.items()}}
    summaries = asyncio.run(_run(out, request, sets, models, data_dir))
    record: dict[str, Any] = {
        "request": request.to_dict(),
        "sets": {name: {"path": str(Path(getattr(request, name)).resolve()), "cases": len(cases),
                        "sha256": sha256_file(Path(getattr(request, name)))} for name, cases in sets.items()},
        "base": {"file": str(Path(base).resolve()), **{name: summaries[name][BASE_MODEL] for name in sets}},
        "exports": {},
    }
    for quant in files:
        entry: dict[str, Any] = {"file": Path(files[quant]).name, **{name: summaries[name][quant] for name in sets}}
        entry["gain"] = _difference(entry["cases"], record["base"]["cases"])
        # what it lost on the general set (negative: it gained there too)
        entry["forgetting"] = _difference(record["base"]["general"], entry["general"]) if "general" in sets else None
        entry["refused"] = refusals(record["base"], entry, request) if request.gate else []
        record["exports"][quant] = entry
    return record


def _difference(minuend: Mapping[str, Any], subtrahend: Mapping[str, Any]) -> float | None:
    """Accuracy of one minus the other's (None when either graded nothing)."""
    if minuend.get("accuracy") is None or subtrahend.get("accuracy") is None:
        return None
    return round(minuend["accuracy"] - subtrahend["accuracy"], 4) + 0.0  # + 0.0: never -0.0


def refusals(base: Mapping[str, Any], tuned: Mapping[str, Any], request: EvalRequest) -> list[str]:
    """Why the gate refuses a file (empty: it passes): not better than the base on CASES, or forgot too much."""
    reasons = []
    cases, before = tuned["cases"], base["cases"]
    if cases["accuracy"] is None or before["accuracy"] is None:
        reasons.append(f"nothing was graded on {request.cases.name}")
    elif cases["accuracy"] <= before["accuracy"]:
        reasons.append(f"not better than its base on {request.cases.name}: {_pct(cases['accuracy'])} vs "
                       f"{_pct(before['accuracy'])} on {cases['cases']} cases")
    if request.general is not None:
        general, was = tuned["general"], base["general"]
        if general["accuracy"] is None or was["accuracy"] is None:
            reasons.append(f"nothing was graded on {request.general.name}")
        elif was["accuracy"] - general["accuracy"] > request.max_forget + 1e-9:
            reasons.append(f"forgot too much on {request.general.name}: {_pct(was['accuracy'])} -> "
                           f"{_pct(general['accuracy'])} (more than --max-forget {request.max_forget:g})")
    return reasons


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def gain_text(entry: Mapping[str, Any]) -> str:
    """One line per file for the command's summary: `q8_0: 83% (base 17%, +67 points) on 12 cases`."""
    cases = entry["cases"]
    line = f"{_pct(cases['accuracy']) if cases['accuracy'] is not None else '—'} on {cases['cases']} cases"
    if entry.get("gain") is not None:
        line += f" ({entry['gain'] * 100:+.0f} points over the base)"
    if entry.get("forgetting") is not None:
        line += f"; general set {entry['general']['accuracy'] * 100:.0f}% ({-entry['forgetting'] * 100:+.0f} points)"
    return line


def registry_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the bot shows in /mode for a served file: its gain over the base on how many cases."""
    return {"gain": entry["gain"], "cases": entry["cases"]["cases"], "accuracy": entry["cases"]["accuracy"],
            "accuracy_ci": entry["cases"]["accuracy_ci"], "forgetting": entry.get("forgetting")}


_KEPT = ("cases", "runs", "accuracy", "accuracy_ci", "accuracy_by_repeat", "stability", "invented_numbers",
         "wrong_language", "loops", "errors", "ungraded", "latency_p50_s", "latency_p95_s", "tokens_in", "tokens_out")


async def _run(out: Path, request: EvalRequest, sets: Mapping[str, list[Any]], models: Mapping[str, Path],
               data_dir: Path | None) -> dict[str, dict[str, dict[str, Any]]]:
    """Every set on every model through the chats' brain; the per-model figures, and reports in DIR/eval/."""
    from agents.backends import ModelRegistry
    from agents.backends.local import LocalBackend
    from bot.app import build_brain, local_options
    from bot.config import ConfigError, load_settings
    from evals.report import build_report, to_markdown
    from evals.runner import EvalMode, run_eval

    try:
        settings = load_settings(**({"data_dir": data_dir} if data_dir is not None else {}))
    except ConfigError as exc:
        raise UsageError(f"cannot evaluate: {exc}") from None
    registry = ModelRegistry()
    options = local_options(settings)
    for name, path in models.items():
        registry.register(LocalBackend(path, name=name, **options))
    try:
        brain = build_brain(settings, registry)
    except ConfigError as exc:
        raise UsageError(f"cannot evaluate: {exc}") from None
    modes = [EvalMode(request.level, name) for name in models]
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for set_name, cases in sets.items():
            log.info("evaluate: %d cases (%s) x %d repeats on %s", len(cases), set_name, request.repeats,
                     ", ".join(f"{request.level} {m}" for m in models))
            runs = await run_eval(brain, cases, modes, repeats=request.repeats, concurrency=2)
            report = build_report(runs, [m.name for m in modes], repeats=request.repeats, target=0.8)
            report_dir = Path(out) / REPORT_DIR
            report_dir.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread((report_dir / f"{set_name}.md").write_text, to_markdown(report), "utf-8")
            summaries[set_name] = {
                mode.model: {key: summary[key] for key in _KEPT}
                for mode, summary in zip(modes, report["modes"], strict=True)
            }
            for mode in modes:
                figures = summaries[set_name][mode.model]
                ci = figures["accuracy_ci"]
                log.info("evaluate: %s on %s: accuracy %s (95%% CI %s)", mode.model, set_name,
                         _pct(figures["accuracy"]) if figures["accuracy"] is not None else "—",
                         f"{_pct(ci[0])}-{_pct(ci[1])}" if ci else "—")
    finally:
        await registry.aclose()
    return summaries
