"""`adaptbot finetune ...` / `python -m finetune ...`: the whole pipeline, or one stage.

    finetune --base MODEL --data FILE.jsonl --out DIR [--name NAME] [--quant f16,q8_0,q4_K_M]
             [--config FILE] [--set key=value ...] [--resume] [--data-dir DIR]
    finetune prepare --base MODEL --data FILE.jsonl --out DIR [--name NAME] [--config FILE] [--set ...] [--resume]
    finetune train   --out DIR [--config FILE] [--set ...] [--resume]
    finetune merge   --out DIR
    finetune export  --out DIR [--quant LIST] [--config FILE] [--set ...]
    finetune evaluate --out DIR --eval CASES [--eval-general CASES2] [--gate [--max-forget 0.03]]
                      [--eval-level zero-shot|prompt|agent] [--eval-repeats N]
    finetune verify  --out DIR [--data-dir DIR] [--config FILE] [--set ...]
The whole pipeline takes the evaluate flags too: with --eval it measures the fine-tune against its base before
verification registers it; with --gate only a fine-tune better than its base (and that forgets at most
--max-forget on --eval-general) is registered.

Exit codes: 0 done, 1 conversion or verification failed or the gate refused, 2 bad input (nothing was changed),
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from finetune.config import DEFAULT_CONFIG, parse_set
from finetune.errors import FinetuneError, UsageError
from finetune.evaluate import DEFAULT_MAX_FORGET, LEVELS, GateError, request_from_args
from finetune.export import QUANTS
from finetune.pipeline import DEFAULT_QUANTS, STAGES

log = logging.getLogger("finetune")


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (without the program name); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = argv[0] if argv and argv[0] in STAGES else None
    parser = _parser(stage)
    try:
        args = parser.parse_args(argv[1:] if stage else argv)
    except SystemExit as exc:  # argparse already printed usage and the error (or the help)
        return int(exc.code or 0)
    handler = _log_to_stderr()
    try:
        _run(stage, args)
    except UsageError as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    except GateError as exc:
        print(f"finetune: not registered: {exc}", file=sys.stderr)
        return 1
    except FinetuneError as exc:
        print(f"finetune: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("finetune: interrupted; checkpoints are kept: run again with --resume to continue", file=sys.stderr)
        return 130
    finally:
        log.removeHandler(handler)
    return 0


def _run(stage: str | None, args: argparse.Namespace) -> None:
    from finetune import pipeline

    overrides = parse_set(getattr(args, "set", None) or [])
    config_file = getattr(args, "config", None)
    evaluation = None
    if stage in (None, "evaluate"):  # checked (both case files read) before anything runs
        evaluation = request_from_args(args.eval, args.eval_general, args.gate, args.max_forget, args.eval_level,
                                       args.eval_repeats)
    quiet_transformers()
    if stage is None:
        manifest = pipeline.run_pipeline(
            args.base, args.data, args.out, args.name, args.quant, args.data_dir, overrides,
            config_file=config_file, resume=args.resume, cache_dir=args.cache_dir, evaluation=evaluation,
        )
        _summary(manifest.to_dict(), args.out)
        return
    actions: dict[str, Callable[[], object]] = {
        "prepare": lambda: pipeline.prepare(args.base, args.data, args.out, args.name, config_file=config_file,
                                            overrides=overrides, resume=args.resume),
        "train": lambda: pipeline.train(args.out, config_file=config_file, overrides=overrides, resume=args.resume),
        "merge": lambda: pipeline.merge(args.out),
        "export": lambda: pipeline.export(args.out, args.quant, config_file=config_file, overrides=overrides,
                                          cache_dir=args.cache_dir),
        "evaluate": lambda: pipeline.evaluate(args.out, evaluation, args.data_dir, config_file=config_file,  # type: ignore[arg-type]
                                              overrides=overrides, cache_dir=args.cache_dir),
        "verify": lambda: pipeline.verify(args.out, args.data_dir, config_file=config_file, overrides=overrides),
    }
    actions[stage]()


def _summary(manifest: dict, out: Path) -> None:
    losses = manifest["losses"]
    if losses.get("val_before") is not None:
        print(f"validation loss: {losses['val_before']:.4f} -> {losses['val_after']:.4f}")
    print(f"training: {losses['steps']} steps, {losses['tokens_per_s']:.0f} tokens/s")
    for r in manifest["verification"].values():
        print(f"{r['file']}: {'verified' if r['passed'] else 'FAILED'} "
              f"(rel_l2 {r['rel_l2']:.2e}, top-1 agreement {r['top1_agreement']:.3f}, {r['criterion']})")
    evaluation = manifest.get("evaluation") or {}
    if evaluation:
        from finetune.evaluate import gain_text

        base = evaluation["base"]["cases"]
        print(f"base model: {base['accuracy'] * 100:.0f}% on {base['cases']} cases" if base["accuracy"] is not None
              else "base model: nothing graded")
        for entry in evaluation["exports"].values():
            print(f"{entry['file']}: {gain_text(entry)}")
    if manifest.get("registry"):
        print(f"registered as finetuned:{manifest['name']} ({manifest['registry']})")
    print(f"manifest: {Path(out) / 'manifest.json'}")


def quiet_transformers() -> None:
    """Hide transformers' per-load progress bars; the stages print their own lines."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _log_to_stderr() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _parser(stage: str | None) -> argparse.ArgumentParser:
    prog = f"finetune {stage}" if stage else "finetune"
    descriptions = {
        None: "LoRA fine-tuning to a verified GGUF: prepare, train, merge, export, verify. "
              f"Stages alone: finetune {{{','.join(STAGES)}}} --help",
        "prepare": "validate the JSONL data (every bad line listed) and split it",
        "train": "train LoRA adapters on the prepared data",
        "merge": "merge the adapter into the float32 base",
        "export": "convert to GGUF with llama.cpp's converter and quantize",
        "evaluate": "run the cases on the base's GGUF and each exported GGUF (what it learned, what it forgot)",
        "verify": "compare each GGUF with the merged model and register the verified ones for the bot",
    }
    p = argparse.ArgumentParser(prog=prog, description=descriptions[stage],
                                epilog=f"config keys and defaults: {DEFAULT_CONFIG}")
    whole = stage is None
    if whole or stage == "prepare":
        p.add_argument("--base", required=True,
                       help="a hub id, a local directory with a transformers causal LM, or a .gguf file "
                            "(de-quantized to float32 once, into OUT/base)")
        p.add_argument("--data", required=True, type=Path, help='JSONL, one {"messages": [...]} per line')
    p.add_argument("--out", required=True, type=Path, help="the run directory")
    if whole or stage == "prepare":
        p.add_argument("--name", help="the model's name for the bot (default: the --out directory's name)")
    if whole or stage == "export":
        p.add_argument("--quant", default=",".join(DEFAULT_QUANTS) if whole else None,
                       help=f"comma-separated, from {', '.join(QUANTS)} (default: {','.join(DEFAULT_QUANTS)})")
    if stage != "merge":
        p.add_argument("--config", type=Path, help="a TOML file with the settings that differ from the defaults")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="override one setting, e.g. --set train.epochs=1 (repeatable)")
    if whole or stage in ("prepare", "train"):
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    if whole or stage == "evaluate":
        p.add_argument("--eval", type=Path, default=None, required=stage == "evaluate", metavar="CASES",
                       help="cases (the `adaptbot eval` format) run on the base's GGUF and on each exported GGUF")
        p.add_argument("--eval-general", type=Path, default=None, metavar="CASES2",
                       help="a general set, before and after: what the fine-tune forgot")
        p.add_argument("--gate", action="store_true",
                       help="register only a fine-tune better than its base on CASES (and within --max-forget)")
        p.add_argument("--max-forget", type=float, default=None,
                       help=f"with --gate and --eval-general: the accuracy it may lose there "
                            f"(default {DEFAULT_MAX_FORGET})")
        p.add_argument("--eval-level", default="zero-shot", help=f"the level the cases run at: {', '.join(LEVELS)} "
                                                                 "(default zero-shot: the model alone)")
        p.add_argument("--eval-repeats", type=int, default=3, help="run every case N times (default 3)")
    if whole or stage in ("verify", "evaluate"):
        p.add_argument("--data-dir", type=Path, default=None,
                       help="where the bot keeps its data (default: $DATA_DIR or ./data)")
    if whole or stage in ("export", "evaluate"):
        p.add_argument("--cache-dir", type=Path, default=None,
                       help="where llama.cpp's converter is cached (default: ~/.cache/adaptbot/llama-cpp-src)")
    return p
