"""Fine-tuning pipeline: training throughput against a plain PEFT loop in the same run; time and peak memory
of every stage.

    .venv/bin/python bench/bench_finetune.py [--layers 4] [--conversations 128] [--epochs 1] [--repeats 2]
    .venv/bin/python bench/bench_finetune.py --base path/to/local/model   # a real model instead of the tiny one
    .venv/bin/python bench/bench_finetune.py --gguf model.gguf --data examples/ladder/train.jsonl --steps 8 \
        --batch-size 4 --threads 2 --repeats 1 --train-only        # the ladder's Gemma 3 270M, from its GGUF

Throughput is real (non-padding) tokens through forward + backward per second of the training loop, model
loading and validation excluded. The baseline is the loop every PEFT tutorial shows (forward with labels,
backward, AdamW step) on the same model, LoRA config, micro-batches and thread count; the pipeline's train
stage adds the schedule, clipping, the progress bar and checkpoints. Target: ratio >= 0.9. The two are run
alternately `--repeats` times and the best of each is kept (the machine is shared and noisy).
Peak memory is this process's peak RSS during each stage (reset between stages through
/proc/self/clear_refs) and, for export, the converter subprocesses' peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.tiny_hf` is not an installed package

from finetune import pipeline
from finetune.config import load_config
from finetune.data import IGNORE, read_split, tokenize_all
from finetune.errors import VerificationError
from finetune.manifest import Manifest
from finetune.train import add_lora, load_model, load_tokenizer, micro_batches
from tests.tiny_hf import build_tiny_llama

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "how", "are", "you", "today",
         "I", "am", "fine", "thank", "capital", "of", "France", "Paris", "Italy", "Rome", "numbers", "one", "two",
         "three", "helpful", "assistant", "answer", "briefly"]


def toy_data(path: Path, n: int, seed: int = 0) -> Path:
    """Conversations with replies of 20-60 words, so the model's compute, not Python, dominates a step."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            question = " ".join(rng.choices(WORDS, k=rng.randint(5, 15)))
            answer = " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            f.write(json.dumps({"messages": messages}) + "\n")
    return path


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def sample_data(source: Path, dest: Path, n: int, seed: int = 0) -> Path:
    """A seeded sample of `n` conversations of `source` (all of them when it has fewer)."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(n, len(lines))))
    dest.write_text("".join(lines[i] + "\n" for i in chosen), encoding="utf-8")
    return dest


def plain_peft_loop(base: str, out: Path, overrides: dict[str, Any]) -> tuple[int, float, float]:
    """The baseline: a minimal PEFT loop over the same micro-batches; (tokens, wall s, CPU s) of the loop."""
    import torch

    manifest = json.loads((out / "manifest.json").read_text())
    if manifest.get("dequantized_from"):  # a GGUF base: the float32 model prepare de-quantized from it, as train loads
        base = str(out / "base")
    config = load_config(overrides=overrides, base=manifest["config"])
    t = config.train
    previous = torch.get_num_threads()
    if t.threads:
        torch.set_num_threads(t.threads)
    try:
        tokenizer = load_tokenizer(base)
        examples, _ = tokenize_all(tokenizer, read_split(out / "prepared" / "train.jsonl"), config.data.max_length)
        model = add_lora(load_model(base, t.dtype, "cpu"), config)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.lr)
        model.train()
        tokens, started, cpu_started = 0, time.perf_counter(), time.process_time()
        for epoch in range(t.epochs):
            for batch in micro_batches(examples, t.batch_size, config.seed, epoch):
                ids = [torch.tensor(e.input_ids) for e in batch]
                input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True,
                                                            padding_value=tokenizer.pad_token_id)
                labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(e.labels) for e in batch],
                                                         batch_first=True, padding_value=IGNORE)
                mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(x), dtype=torch.long) for x in ids],
                                                       batch_first=True)
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                tokens += int(mask.sum())
        return tokens, time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="a local model directory (default: build a tiny random Llama)")
    p.add_argument("--gguf", type=Path, help="a GGUF file as the base (de-quantized by prepare, as in the pipeline)")
    p.add_argument("--data", type=Path, help="training conversations (JSONL; default: random toy conversations)")
    p.add_argument("--steps", type=int, default=0,
                   help="optimizer steps per loop: a seeded sample of steps x batch-size conversations, no "
                        "validation split (0: --conversations, 10%% validation)")
    p.add_argument("--train-only", action="store_true", help="stop after training (no merge, export, verify)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--conversations", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both loops (0: torch's default); 1 keeps figures stable on a shared machine")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quant", default="f16,q8_0,q4_K_M")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    overrides = {"train.epochs": args.epochs, "train.lr": 1e-3, "train.batch_size": args.batch_size,
                 "train.threads": args.threads,
                 "data.val_fraction": 0.0 if args.steps else 0.1}
    with tempfile.TemporaryDirectory(prefix="bench-ft-") as tmp:
        root = Path(tmp)
        base = str(args.gguf.resolve()) if args.gguf else args.base or str(build_tiny_llama(
            root / "base", hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_layers=args.layers))
        n = args.steps * args.batch_size if args.steps else args.conversations
        data = sample_data(args.data, root / "data.jsonl", n) if args.data else toy_data(root / "data.jsonl", n)
        stages: dict[str, tuple[float, float, float]] = {}  # stage -> (seconds, peak RSS MB, children peak MB)

        def timed(stage: str, fn: Any) -> Any:
            exact = reset_peak_rss()
            started = time.perf_counter()
            result = fn()
            label = stage if exact else f"{stage} (peak so far)"
            stages[label] = (time.perf_counter() - started, peak_rss_mb(), children_peak_mb())
            return result

        timed("prepare", lambda: pipeline.prepare(base, data, root / "run", "bench", overrides=overrides))
        # Interleave pipeline and baseline runs; keep the best of each.
        rates: dict[str, list[float]] = {"plain": [], "pipeline": [], "plain_cpu": [], "pipeline_cpu": []}
        for i in range(args.repeats):
            tokens, seconds, cpu = plain_peft_loop(base, root / "run", overrides)
            rates["plain"].append(tokens / seconds)
            rates["plain_cpu"].append(tokens / cpu)
            stage = "train" if i == 0 else f"train (repeat {i + 1})"
            losses = timed(stage, lambda: pipeline.train(root / "run", progress=False)).losses
            rates["pipeline"].append(losses["tokens_per_s"])
            rates["pipeline_cpu"].append(losses["tokens"] / losses["cpu_seconds"])
        if not args.train_only:
            timed("merge", lambda: pipeline.merge(root / "run"))
            timed("export", lambda: pipeline.export(root / "run", args.quant))
            try:
                timed("verify", lambda: pipeline.verify(root / "run", root / "bot-data"))
            except VerificationError as exc:  # the figures are in the manifest either way; print them below
                print(f"verification: {exc}")
        manifest = Manifest.load(root / "run")

        info = manifest.data
        model = base if args.base or args.gguf else f"tiny Llama, hidden {args.hidden}, {args.layers} layers"
        print(f"model: {model}; "
              f"{info['train']} train conversations, {info['tokens']:,} tokens in all; "
              f"{args.epochs} epoch(s), batch {args.batch_size}, threads {args.threads or 'default'}")
        print(f"\ntraining throughput, tokens/s, best of {args.repeats} alternated runs (all runs listed)")
        for clock in ("", "_cpu"):
            title = "per wall-clock second" if not clock else "per CPU second (steadier when the machine is shared)"
            plain, pipe = rates[f"plain{clock}"], rates[f"pipeline{clock}"]
            ratio = max(pipe) / max(plain)
            print(f"  {title}")
            print(f"    plain PEFT loop      {max(plain):8.0f}   ({', '.join(f'{r:.0f}' for r in plain)})")
            print(f"    pipeline train stage {max(pipe):8.0f}   ({', '.join(f'{r:.0f}' for r in pipe)})")
            print(f"    ratio pipeline / plain: {ratio:.2f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
        print("\nstage                      seconds   peak RSS MB   converter subprocess peak MB")
        for stage, (seconds, rss, children) in stages.items():
            sub = f"{children:30.0f}" if stage == "export" else f"{'-':>30s}"
            print(f"  {stage:24s} {seconds:8.1f} {rss:13.0f}{sub}")
        losses = manifest.losses
        if losses.get("val_before") is not None:
            print(f"\nlosses: validation {losses['val_before']:.3f} -> {losses['val_after']:.3f}")
        for quant, v in manifest.verification.items():
            print(f"  {quant:7s} rel_l2 {v['rel_l2']:.2e}  top-1 {v['top1_agreement']:.3f}  "
                  f"{'verified' if v['passed'] else 'FAILED'}")


if __name__ == "__main__":
    main()
