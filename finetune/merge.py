"""Stage 3, merge: reload the base in float32, fold the LoRA adapter in, save model + tokenizer + template."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from finetune.errors import UsageError

log = logging.getLogger("finetune")

# TRL-style training templates mark assistant spans with {% generation %}; llama.cpp's Jinja does not know the tag.
_GENERATION_TAGS = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def inference_template(template: str | None) -> str | None:
    """The chat template without training-only {% generation %} markers."""
    return _GENERATION_TAGS.sub("", template) if template else template


def merge(base: str, adapter_dir: Path, merged_dir: Path, end_of_turn: int | None = None) -> Path:
    """Merge in float32 (never into quantized or half weights: rounding would eat the small LoRA update)."""
    import torch
    from peft import PeftModel

    from finetune.train import load_model, load_tokenizer, quiet_peft

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise UsageError(f"no adapter in {adapter_dir}; run the train stage first")
    model = load_model(base, "float32", "cpu")
    with quiet_peft():
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model = model.to(torch.float32)
    if end_of_turn is not None:
        # generate() stops at any of these ids: make sure the end-of-turn token the model learned is one of them
        eos = model.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if end_of_turn not in ids:
            model.generation_config.eos_token_id = [*ids, end_of_turn]
    merged_dir = Path(merged_dir)
    model.save_pretrained(merged_dir)
    tokenizer = load_tokenizer(adapter_dir)
    tokenizer.chat_template = inference_template(tokenizer.chat_template)
    tokenizer.save_pretrained(merged_dir)
    log.info("merge: %s + %s -> %s", base, adapter_dir.name, merged_dir)
    return merged_dir
