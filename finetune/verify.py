"""Stage 5, verify: each GGUF against the merged HF model, on the same token ids.

Checks per file: llama.cpp tokenizes the rendered conversations to exactly the HF ids; the GGUF carries the
chat template and renders it like transformers does; the end-of-turn token ends generation; and the logits
agree (relative L2 distance for float and q8_0 files, top-1 agreement for K-quants).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import VerifyConfig
from finetune.data import render
from finetune.export import K_QUANTS

log = logging.getLogger("finetune")


@dataclass
class Verification:
    quant: str
    file: str
    tokens: int = 0  # positions compared
    tokenization_identical: bool = False
    chat_template_preserved: bool = False
    end_of_turn_stops: bool | None = None  # None: the template has no special end-of-turn token
    pre_tokenizer: str | None = None  # tokenizer.ggml.pre written by the converter
    rel_l2: float = math.inf
    top1_agreement: float = 0.0
    criterion: str = ""  # the logits check applied, e.g. "rel_l2 <= 0.002"
    passed: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def criterion(quant: str, cfg: VerifyConfig) -> tuple[str, float]:
    """("rel_l2", max) or ("top1", min) for a quantization type."""
    if quant in K_QUANTS:
        return "top1", cfg.min_top1_k_quant
    return "rel_l2", getattr(cfg, f"max_rel_l2_{quant}")


def verify(
    merged_dir: Path,
    files: dict[str, Path],
    samples: list[list[dict[str, str]]],
    cfg: VerifyConfig,
    end_of_turn: int | None = None,
) -> dict[str, Verification]:
    """Compare every file in `files` ({quant: path}) with the merged model on `samples` (conversations)."""
    import numpy as np
    import torch

    from finetune.train import load_model, load_tokenizer

    tokenizer = load_tokenizer(merged_dir)
    model = load_model(merged_dir, "float32", "cpu").eval()
    texts = [render(tokenizer, messages, add_generation_prompt=False) for messages in samples]
    ids = [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    with torch.no_grad():
        reference = [model(torch.tensor([x])).logits[0].float().numpy() for x in ids]
    del model
    prompt_msgs = samples[0][:-1] if len(samples[0]) > 1 else samples[0]
    hf_prompt = render(tokenizer, prompt_msgs, add_generation_prompt=True)

    results = {}
    for quant, path in files.items():
        results[quant] = _verify_file(
            quant, Path(path), tokenizer, texts, ids, reference, prompt_msgs, hf_prompt, cfg, end_of_turn, np
        )
        r = results[quant]
        log.info("verify: %s: %s rel_l2=%.2e top1=%.3f on %d tokens%s", path.name, "ok" if r.passed else "FAILED",
                 r.rel_l2, r.top1_agreement, r.tokens, "" if r.passed else " (" + "; ".join(r.problems) + ")")
    return results


@contextmanager
def plain_cpu_kernels() -> Iterator[None]:
    """Load llama.cpp models without its extra weight buffers on CPUs that report AMX (the bot's local backend
    does the same, in one place: `agents.backends.local`): a -march=native llama.cpp dies there with SIGILL."""
    from agents.backends.local import cpu_has_amx, model_params

    if not cpu_has_amx():
        yield
        return
    with model_params(use_extra_bufts=False):
        yield


def _verify_file(
    quant: str, path: Path, tokenizer: Any, texts: list[str], ids: list[list[int]], reference: list[Any],
    prompt_msgs: list[dict[str, str]], hf_prompt: str, cfg: VerifyConfig, end_of_turn: int | None, np: Any,
) -> Verification:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    result = Verification(quant=quant, file=path.name)
    n_ctx = max(64, max(len(x) for x in ids) + 16)
    with plain_cpu_kernels():
        llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
            n_threads=os.cpu_count() or 1, n_gpu_layers=0, verbose=False,
        )
    try:
        result.pre_tokenizer = llm.metadata.get("tokenizer.ggml.pre")
        result.tokenization_identical = all(
            llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == x
            for text, x in zip(texts, ids, strict=True)
        )
        if not result.tokenization_identical:
            result.problems.append("llama.cpp tokenizes the conversations differently from transformers")

        template = llm.metadata.get("tokenizer.chat_template")
        rendered = None
        if template:
            formatter = Jinja2ChatFormatter(template, tokenizer.eos_token or "", tokenizer.bos_token or "")
            rendered = formatter(messages=prompt_msgs).prompt
        result.chat_template_preserved = template == tokenizer.chat_template and rendered == hf_prompt
        if not result.chat_template_preserved:
            result.problems.append("the GGUF's chat template is missing or renders differently")

        if end_of_turn is not None:
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            result.end_of_turn_stops = bool(llama_cpp.llama_vocab_is_eog(vocab, end_of_turn))
            if not result.end_of_turn_stops:
                result.problems.append(f"token {end_of_turn} ends turns but llama.cpp does not stop on it")

        sq_diff = sq_ref = 0.0
        same = total = 0
        for x, ref in zip(ids, reference, strict=True):
            llm.reset()
            llm.eval(x)
            got = np.asarray(llm.scores[: len(x)], dtype=np.float64)
            width = min(got.shape[1], ref.shape[1])  # the GGUF vocab may be padded
            got, want = got[:, :width], ref[:, :width].astype(np.float64)
            sq_diff += float(((got - want) ** 2).sum())
            sq_ref += float((want**2).sum())
            same += int((got.argmax(-1) == want.argmax(-1)).sum())
            total += len(x)
        result.tokens = total
        result.rel_l2 = math.sqrt(sq_diff / sq_ref) if sq_ref > 0 else math.inf
        result.top1_agreement = same / total if total else 0.0
    finally:
        llm.close()

    kind, limit = criterion(quant, cfg)
    if kind == "top1":
        result.criterion = f"top1 >= {limit:g}"
        logits_ok = result.top1_agreement >= limit
    else:
        result.criterion = f"rel_l2 <= {limit:g}"
        logits_ok = result.rel_l2 <= limit
    if not logits_ok:
        result.problems.append(f"logits too far from the merged model ({result.criterion})")
    result.passed = not result.problems
    return result
