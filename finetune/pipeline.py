"""The five stages over one run directory, each runnable alone, and `run_pipeline` chaining them.

    DIR/prepared/{train,val}.jsonl   the validated, split conversations        (prepare)
    DIR/base/                        a GGUF base, de-quantized to float32      (prepare, GGUF bases only)
    DIR/checkpoints/step-*.pt        adapter + optimizer state, for --resume   (train)
    DIR/adapter/                     the LoRA adapter and tokenizer            (train)
    DIR/merged/                      base + adapter in float32, tokenizer      (merge)
    DIR/<name>-<quant>.gguf          llama.cpp files                           (export)
    DIR/base-gguf/, DIR/eval/        the base as a GGUF, the case reports      (evaluate, with --eval)
    DIR/manifest.json                everything above, with figures and sha256 (every stage)
and, after verification, `<data_dir>/finetuned/<name>.json` for the bot.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune import data as datamod
from finetune import gguf_base
from finetune.config import Config, load_config
from finetune.errors import DataError, UsageError, VerificationError
from finetune.evaluate import EvalRequest, GateError
from finetune.export import parse_quants
from finetune.manifest import MANIFEST, Manifest, now
from finetune.registry import check_name, default_data_dir, register

log = logging.getLogger("finetune")

DEFAULT_QUANTS = ("f16", "q8_0", "q4_K_M")
STAGES = ("prepare", "train", "merge", "export", "evaluate", "verify")


def run_pipeline(
    base: str,
    data: Path,
    out: Path,
    name: str | None = None,
    quants: str | list[str] | tuple[str, ...] = DEFAULT_QUANTS,
    data_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    resume: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
    evaluation: EvalRequest | None = None,
) -> Manifest:
    """Every stage in order; returns the final manifest (also in `out/manifest.json`).

    `evaluation` (checked by `finetune.evaluate.request_from_args` before this starts): the fine-tune is measured
    against its base before verification registers it, and with its gate on, registered only if it is better.
    """
    quant_list = parse_quants(quants)  # bad names fail before hours of training
    prepare(base, data, out, name, config_file=config_file, overrides=overrides, resume=resume)
    train(out, resume=resume, progress=progress)
    merge(out)
    export(out, quant_list, cache_dir=cache_dir)
    if evaluation is not None:
        evaluate(out, evaluation, data_dir, cache_dir=cache_dir)
    return verify(out, data_dir)


def prepare(
    base: str,
    data: Path,
    out: Path,
    name: str | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> Manifest:
    """Validate every line, tokenize with the base's chat template, split; nothing else starts on bad data."""
    out, data = Path(out), Path(data)
    existing = (out / MANIFEST).is_file()
    if existing and not resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    saved = Manifest.load(out) if existing else None
    name = check_name(name or (saved.name if saved else _name_from(out)))
    # resuming: the run's saved config, with only what this command line names changed
    config = load_config(config_file, overrides, base=saved.config if saved and saved.config else None)
    with _stage(out, "prepare") as timer:
        conversations, problems = datamod.parse_conversations(data)
        from finetune.train import load_tokenizer

        gguf = gguf_base.describe(Path(base)) if gguf_base.is_gguf(base) else None
        tokenizer = gguf_base.load_tokenizer(Path(base), gguf) if gguf is not None else load_tokenizer(base)
        examples, more = datamod.tokenize_all(tokenizer, conversations, config.data.max_length)
        if problems or more:
            raise DataError(str(data), problems + more)
        if not examples:
            raise UsageError(f"data file {data} holds no conversations")
        digest = datamod.sha256_file(data)
        manifest = saved or Manifest(name=name, base=base)
        if existing and (manifest.base != base or manifest.data.get("sha256") != digest):
            raise UsageError(f"--resume: {out} was started with another base or data file; choose another --out")
        if existing and _data_settings(manifest.config) != _data_settings(config.to_dict()):
            raise UsageError(f"--resume: {out} was prepared with other data settings (seed, data.*)")
        train_c, val_c = datamod.split(conversations, config.data.val_fraction, config.seed)
        datamod.write_jsonl(out / "prepared" / "train.jsonl", train_c)
        datamod.write_jsonl(out / "prepared" / "val.jsonl", val_c)
        eot = datamod.end_of_turn_token(tokenizer)
        manifest.name, manifest.config = name, config.to_dict()
        manifest.data = {
            "path": str(data.resolve()),
            "sha256": digest,
            "conversations": len(conversations),
            "train": len(train_c),
            "val": len(val_c),
            "tokens": sum(len(e.input_ids) for e in examples),
            "trained_tokens": sum(e.trained_tokens for e in examples),
            "end_of_turn": eot,
            "end_of_turn_text": tokenizer.convert_ids_to_tokens(eot) if eot is not None else None,
        }
        log.info("prepare: %d conversations (%d train / %d validation), %s tokens, %s of them assistant tokens; "
                 "end of turn: %s", len(conversations), len(train_c), len(val_c),
                 f"{manifest.data['tokens']:,}", f"{manifest.data['trained_tokens']:,}",
                 manifest.data["end_of_turn_text"])
        if gguf is not None:  # only now that the data is known to be good: this takes minutes on real models
            manifest.dequantized_from = gguf_base.dequantize(
                Path(base), out / gguf_base.BASE_DIR, tokenizer, gguf, manifest.dequantized_from)
        manifest.hash_files(out, [out / "prepared", *([out / gguf_base.BASE_DIR] if gguf is not None else [])])
        timer(manifest)
    return manifest


def train(
    out: Path,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Manifest:
    """LoRA training on the prepared split; validation loss before and after; checkpoints for --resume."""
    from finetune import train as trainmod

    out = Path(out)
    manifest = Manifest.load(out)
    config = _config(manifest, config_file, overrides)
    with _stage(out, "train") as timer:
        if not resume:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)  # an earlier attempt's, not this one's
        tokenizer = trainmod.load_tokenizer(_model_source(out, manifest))
        train_ex, val_ex = (_examples(out, split, tokenizer, config) for split in ("train", "val"))
        result = trainmod.train(train_ex, val_ex, _model_source(out, manifest), config, out, resume=resume,
                                progress=progress)
        manifest.config = config.to_dict()
        manifest.losses = {
            "val_before": result.val_loss_before,
            "val_after": result.val_loss_after,
            "steps": result.steps,
            "train_first": result.train_losses[0][1] if result.train_losses else None,
            "train_last": result.train_losses[-1][1] if result.train_losses else None,
            "tokens": result.tokens,
            "seconds": round(result.seconds, 3),
            "cpu_seconds": round(result.cpu_seconds, 3),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "resumed_from": result.resumed_from,
            "curve": result.train_losses,
        }
        manifest.hash_files(out, [out / "adapter"])
        timer(manifest)
    return manifest


def merge(out: Path) -> Manifest:
    """Fold the adapter into the float32 base; save with the tokenizer and the inference chat template."""
    from finetune.merge import merge as merge_model

    out = Path(out)
    manifest = Manifest.load(out)
    with _stage(out, "merge") as timer:
        shutil.rmtree(out / "merged", ignore_errors=True)
        merge_model(_model_source(out, manifest), out / "adapter", out / "merged", manifest.data.get("end_of_turn"))
        manifest.hash_files(out, [out / "merged"])
        timer(manifest)
    return manifest


def export(
    out: Path,
    quants: str | list[str] | tuple[str, ...] | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> Manifest:
    """GGUF files through llama.cpp's converter, quantized through llama.cpp."""
    from finetune.export import export as export_gguf

    out = Path(out)
    manifest = Manifest.load(out)
    config = _config(manifest, config_file, overrides)
    quant_list = parse_quants(quants if quants is not None else (manifest.quants or list(DEFAULT_QUANTS)))
    vocab_from = manifest.dequantized_from.get("path")  # a GGUF base: its llama.cpp vocabulary goes in unchanged
    if vocab_from and not Path(vocab_from).is_file():
        raise UsageError(f"the base GGUF {vocab_from} is gone; its vocabulary is copied into the export: put it back")
    with _stage(out, "export") as timer:
        files = export_gguf(out / "merged", out, manifest.name, quant_list, pre_tokenizer=config.export.pre_tokenizer,
                            quantize_from=config.export.quantize_from, cache_dir=cache_dir,
                            vocab_from=Path(vocab_from) if vocab_from else None)
        manifest.config = config.to_dict()
        manifest.quants = quant_list
        manifest.exports = {f.quant: {"file": f.path.name, "tensor_types": f.tensor_types} for f in files}
        manifest.verification = {}  # new files: earlier figures no longer apply
        manifest.evaluation = {}
        manifest.hash_files(out, [f.path for f in files])
        timer(manifest)
    return manifest


def evaluate(
    out: Path,
    request: EvalRequest,
    data_dir: Path | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> Manifest:
    """Run the cases on the base's GGUF and on every exported GGUF; record accuracy, gain, forgetting, the gate."""
    from finetune import evaluate as evalmod

    out = Path(out)
    manifest = Manifest.load(out)
    config = _config(manifest, config_file, overrides)
    files = _exported_files(out, manifest)
    with _stage(out, "evaluate") as timer:
        base = evalmod.base_gguf(out, manifest, list(files), config.export.pre_tokenizer, cache_dir)
        manifest.evaluation = evalmod.evaluate(out, request, files, base, data_dir)
        for quant, entry in manifest.evaluation["exports"].items():
            log.info("evaluate: %s: %s%s", files[quant].name, evalmod.gain_text(entry),
                     f"; the gate refuses it: {'; '.join(entry['refused'])}" if entry["refused"] else "")
        if (out / evalmod.BASE_GGUF_DIR).is_dir():
            manifest.hash_files(out, [out / evalmod.BASE_GGUF_DIR])
        timer(manifest)
    return manifest


def _exported_files(out: Path, manifest: Manifest) -> dict[str, Path]:
    if not manifest.exports:
        raise UsageError(f"no GGUF files recorded in {out / MANIFEST}; run the export stage first")
    files = {quant: out / info["file"] for quant, info in manifest.exports.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise UsageError(f"exported files are missing: {', '.join(missing)}; run the export stage again")
    return files


def verify(
    out: Path,
    data_dir: Path | None = None,
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Manifest:
    """Compare every exported GGUF with the merged model; register the verified ones the gate (if any) let through."""
    from finetune.verify import verify as verify_files

    out = Path(out)
    manifest = Manifest.load(out)
    config = _config(manifest, config_file, overrides)
    files = _exported_files(out, manifest)
    evaluated = manifest.evaluation.get("exports", {})
    refused = {quant: e["refused"] for quant, e in evaluated.items() if e.get("refused")}
    with _stage(out, "verify") as timer:
        prepared = out / "prepared"
        convs = datamod.read_split(prepared / "val.jsonl") + datamod.read_split(prepared / "train.jsonl")
        samples = [c.messages for c in convs[: config.verify.samples]]  # held-out conversations first
        results = verify_files(out / "merged", files, samples, config.verify, manifest.data.get("end_of_turn"))
        manifest.config = config.to_dict()
        manifest.verification = {quant: r.to_dict() for quant, r in results.items()}
        passed = {quant: files[quant] for quant, r in results.items() if r.passed and quant not in refused}
        if passed:
            from finetune.evaluate import registry_summary

            target = Path(data_dir) if data_dir is not None else default_data_dir()
            summary = {quant: registry_summary(e) for quant, e in evaluated.items() if e.get("gain") is not None}
            manifest.registry = str(register(manifest.name, passed, manifest.base, target, summary,
                                             out / MANIFEST).resolve())
            log.info("verify: registered %s as finetuned:%s -> %s", ", ".join(passed), manifest.name,
                     manifest.registry)
        timer(manifest)
    failed = {quant: r for quant, r in results.items() if not r.passed}
    registered = f"; registered only {', '.join(passed)}" if passed else "; nothing was registered"
    if failed:
        raise VerificationError("verification failed for " + "; ".join(
            f"{quant}: {', '.join(r.problems)} (rel_l2={r.rel_l2:.2e}, top1={r.top1_agreement:.3f})"
            for quant, r in failed.items()
        ) + registered)
    if refused:
        raise GateError("the gate refused " + "; ".join(
            f"{files[quant].name}: {', '.join(reasons)}" for quant, reasons in refused.items()) + registered)
    return manifest


def _model_source(out: Path, manifest: Manifest) -> str:
    """What train and merge load: the de-quantized copy of a GGUF base, else the base as given."""
    return str(out / gguf_base.BASE_DIR) if manifest.dequantized_from else manifest.base


def _examples(out: Path, split: str, tokenizer: Any, config: Config) -> list[datamod.Example]:
    convs = datamod.read_split(out / "prepared" / f"{split}.jsonl")
    examples, problems = datamod.tokenize_all(tokenizer, convs, config.data.max_length)
    if problems:
        raise DataError(str(out / "prepared" / f"{split}.jsonl"), problems)
    return examples


def _config(manifest: Manifest, config_file: Path | None, overrides: Mapping[str, Any] | None) -> Config:
    """The run's saved config with this stage's file/overrides on top; data settings are fixed at prepare."""
    config = load_config(config_file, overrides, base=manifest.config or None)
    if manifest.config and _data_settings(config.to_dict()) != _data_settings(manifest.config):
        raise UsageError("seed and data.* are fixed when the data is prepared; run prepare again in a new --out")
    return config


def _data_settings(cfg: Mapping[str, Any]) -> tuple[Any, Any]:
    return cfg.get("seed"), cfg.get("data")


def _name_from(out: Path) -> str:
    """A registry name from the output directory's name ("runs/My Bot!" -> "My-Bot")."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", out.resolve().name).strip("-.")
    return cleaned[:64] or "finetuned"


@contextmanager
def _stage(out: Path, stage: str) -> Iterator[Any]:
    """Time a stage; the body calls `timer(manifest)` at its end to record the time and save the manifest."""
    started = time.perf_counter()
    log.info("== %s ==", stage)

    def finish(manifest: Manifest) -> None:
        manifest.stages[stage] = {"seconds": round(time.perf_counter() - started, 3), "finished": now()}
        manifest.save(out)

    yield finish
