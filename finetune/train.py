"""Stage 2, train: LoRA on a causal LM with a plain, readable loop (loss on assistant tokens only).

The loop: seeded batch order per epoch -> forward with labels -> backward -> (every grad_accum micro-batches)
clip, AdamW step, schedule step -> checkpoint every `save_every` steps. Resuming restores the adapter, the
optimizer, the schedule and the RNG and skips the micro-batches already done, so a resumed run matches an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import Config
from finetune.data import IGNORE, Example
from finetune.errors import UsageError

log = logging.getLogger("finetune")


@dataclass
class TrainResult:
    val_loss_before: float | None
    val_loss_after: float | None
    steps: int
    train_losses: list[tuple[int, float]] = field(default_factory=list)  # (optimizer step, mean loss)
    tokens: int = 0  # real (non-padding) tokens through forward + backward in this session
    seconds: float = 0.0  # wall time of the loop in this session (checkpoints included, evaluation not)
    cpu_seconds: float = 0.0  # CPU time of this process over the same span (steadier on a shared machine)
    resumed_from: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def pick_device(name: str) -> Any:
    import torch

    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_tokenizer(source: str | Path, gguf_file: str | None = None) -> Any:
    """The tokenizer of a hub id, a local directory or a GGUF file in it, with a pad token (eos if none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        what = f"{Path(source) / gguf_file}" if gguf_file else source
        raise UsageError(f"cannot load the tokenizer of {what}: {_first_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(source: str | Path, dtype: str = "float32", device: Any = "cpu", gguf_file: str | None = None) -> Any:
    """A causal LM from a hub id, a local directory or a GGUF file in it (de-quantized), in `dtype`, on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=getattr(torch, dtype), gguf_file=gguf_file)
    except (OSError, ValueError) as exc:
        what = f"{Path(source) / gguf_file}" if gguf_file else source
        raise UsageError(f"cannot load the model {what}: {_first_line(exc)}") from None
    if gguf_file:
        # The weights are plain float32 tensors now, but the GGUF loader stays attached and refuses to save them.
        model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
        del model.config.quantization_config
    return model.to(device)


def add_lora(model: Any, config: Config) -> Any:
    """Wrap `model` with fresh LoRA adapters (seeded init); only they are trainable."""
    import torch
    from peft import LoraConfig, get_peft_model

    lora = config.lora
    torch.manual_seed(config.seed)
    peft_config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with quiet_peft():
            return get_peft_model(model, peft_config)
    except ValueError as exc:  # e.g. target modules not found in the model
        raise UsageError(f"LoRA setup failed: {_first_line(exc)}") from None


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft calls a transformers method deprecated in v5 (`is_gradient_checkpointing`); not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def collate(examples: list[Example], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-pad a micro-batch: padding gets attention 0 and label IGNORE."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """The batch's mean loss per assistant token, as `model(**batch).loss`, with the output head applied only from
    the first assistant token on (`logits_to_keep`): a prompt's logits are never used, and on a large vocabulary
    (Gemma: 262k) the head is most of a small model's compute."""
    import torch

    labels = batch["labels"]
    width = labels.shape[1]
    labelled = (labels[:, 1:] != IGNORE).any(dim=0).nonzero()
    if len(labelled) == 0:
        return model(**batch).loss  # nothing to learn: the model's own (zero or NaN) answer
    keep = width - int(labelled[0])  # logits at position i predict token i + 1
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits
    targets = labels[:, width - keep + 1:]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=IGNORE)


def micro_batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """This epoch's micro-batches: a fresh seeded shuffle per epoch, so a resumed run sees the same order."""
    order = list(range(len(examples)))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    return [[examples[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]


def evaluate(model: Any, examples: list[Example], batch_size: int, pad_id: int, device: Any) -> float | None:
    """Mean loss per assistant token over `examples` (None when there are none)."""
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(examples), batch_size):
            batch = collate(examples[k : k + batch_size], pad_id, device)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())  # the model shifts labels by one
            total += float(answer_loss(model, batch)) * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def train(
    train_examples: list[Example],
    val_examples: list[Example],
    base: str,
    config: Config,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train LoRA adapters on `base`; save them (with the tokenizer) to `out/adapter`."""
    import torch

    previous = torch.get_num_threads()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    try:
        return _train(train_examples, val_examples, base, config, Path(out), resume=resume, progress=progress)
    finally:
        torch.set_num_threads(previous)


def _train(
    train_examples: list[Example], val_examples: list[Example], base: str, config: Config, out: Path,
    *, resume: bool, progress: bool,
) -> TrainResult:
    import torch

    t = config.train
    ckpt_dir = out / "checkpoints"
    fingerprint = _fingerprint(base, config, train_examples)
    checkpoint = _latest_checkpoint(ckpt_dir) if resume else None
    if resume and checkpoint is None:
        log.info("train: --resume given but no checkpoint in %s; starting from the beginning", ckpt_dir)

    device = pick_device(t.device)
    tokenizer = load_tokenizer(base)
    model = load_model(base, t.dtype, device)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    model = add_lora(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    log.info("train: %s on %s, LoRA r=%d: %s of %s parameters trainable (%.2f%%)",
             base, device, config.lora.rank, f"{trainable:,}", f"{total_params:,}", 100 * trainable / total_params)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    per_epoch = math.ceil(math.ceil(len(train_examples) / t.batch_size) / t.grad_accum)
    total_steps = per_epoch * t.epochs
    scheduler = _schedule(optimizer, t.lr_schedule, round(t.warmup_ratio * total_steps), total_steps)
    pad_id = tokenizer.pad_token_id

    result = TrainResult(val_loss_before=None, val_loss_after=None, steps=0)
    step = 0
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # tensors and plain data only
        if state["fingerprint"] != fingerprint:
            raise UsageError(
                f"{checkpoint} was made with another base, data or config; run without --resume "
                f"in a new --out, or restore the original settings"
            )
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]
        result.val_loss_before = state["val_loss_before"]
        result.train_losses = [tuple(x) for x in state["train_losses"]]
        result.resumed_from = step
        log.info("train: resumed from %s (step %d of %d)", checkpoint.name, step, total_steps)
    else:
        result.val_loss_before = evaluate(model, val_examples, t.batch_size, pad_id, device)
        torch.manual_seed(config.seed)  # dropout masks: same stream with or without the evaluation above
    if result.val_loss_before is not None:
        log.info("train: validation loss before: %.4f", result.val_loss_before)

    from tqdm.auto import tqdm

    model.train()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(step // per_epoch, t.epochs):
        batches = micro_batches(train_examples, t.batch_size, config.seed, epoch)
        groups = [batches[k : k + t.grad_accum] for k in range(0, len(batches), t.grad_accum)]
        for group in groups[step - epoch * per_epoch :]:
            step_loss = 0.0
            for examples in group:
                batch = collate(examples, pad_id, device)
                loss = answer_loss(model, batch) / len(group)  # mean over the step's micro-batches
                loss.backward()
                step_loss += loss.item()
                result.tokens += int(batch["attention_mask"].sum())
            if t.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            result.train_losses.append((step, round(step_loss, 5)))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{step_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            end_of_epoch = step % per_epoch == 0
            if (t.save_every and step % t.save_every == 0) or end_of_epoch:
                _save_checkpoint(ckpt_dir, step, t.keep_checkpoints, {
                    "fingerprint": fingerprint,
                    "adapter": _adapter_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                    "step": step,
                    "val_loss_before": result.val_loss_before,
                    "train_losses": result.train_losses,
                })
    bar.close()
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    result.steps = step

    result.val_loss_after = evaluate(model, val_examples, t.batch_size, pad_id, device)
    if result.val_loss_after is not None:
        log.info("train: validation loss after: %.4f (before %.4f)", result.val_loss_after, result.val_loss_before)
    log.info("train: %d steps, %s tokens in %.1f s (%.0f tokens/s)",
             step, f"{result.tokens:,}", result.seconds, result.tokens_per_s)
    adapter_dir = out / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    return result


def _schedule(optimizer: Any, kind: str, warmup: int, total: int) -> Any:
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if kind == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def _adapter_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu").clone() for k, v in get_peft_model_state_dict(model).items()}


def _save_checkpoint(ckpt_dir: Path, step: int, keep: int, state: dict[str, Any]) -> None:
    """Write `step-NNNNNNN.pt` atomically (a crash mid-write leaves the previous one usable); prune old ones."""
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step-{step:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(ckpt_dir.glob("step-*.pt"))[:-keep]:
        old.unlink()


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = sorted(ckpt_dir.glob("step-*.pt")) if ckpt_dir.is_dir() else []
    return found[-1] if found else None


def _fingerprint(base: str, config: Config, examples: list[Example]) -> str:
    """What a checkpoint must match to be resumed: base, training data and every setting that shapes training."""
    cfg = config.to_dict()
    relevant = {"base": base, "seed": cfg["seed"], "lora": cfg["lora"], "data": cfg["data"],
                "train": {k: v for k, v in cfg["train"].items()
                          if k not in ("save_every", "keep_checkpoints", "device", "threads",
                                       "gradient_checkpointing")},
                "examples": [(e.input_ids, e.labels) for e in examples]}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
