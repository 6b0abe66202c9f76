"""A GGUF file as the base: de-quantized once (in prepare) into DIR/base/, which every later stage loads.

    DIR/base/   config.json, model.safetensors (float32), tokenizer with a chat template

transformers reads the file (`from_pretrained(dir, gguf_file=...)`) and de-quantizes every tensor to float32; it
knows the common architectures (llama, mistral, qwen2/3, gemma2/3, phi3, ...) and quant types (F32, F16, BF16,
Q4_0..Q8_0, the K-quants, most IQ types). A file without a chat template (a base model) gets its architecture's
(finetune/templates.py). The export copies the file's llama.cpp vocabulary into the fine-tuned GGUF, so it
tokenizes exactly as the base did in llama.cpp.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from finetune.data import sha256_file
from finetune.errors import UsageError
from finetune.templates import template_for

log = logging.getLogger("finetune")

BASE_DIR = "base"


def is_gguf(base: str | Path) -> bool:
    return str(base).lower().endswith(".gguf")


def describe(path: Path) -> dict[str, Any]:
    """The manifest's record of a GGUF base: which file (path, sha256) and how it was quantized."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"the base {path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable GGUF file: {exc}") from None
    file_type = reader.fields.get("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type.contents()).name.removeprefix("MOSTLY_") if file_type else None
    except ValueError:
        file_type_name = str(file_type.contents()) if file_type else None
    return {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "architecture": reader.fields["general.architecture"].contents(),
        "file_type": file_type_name,
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
        "chat_template": "the file's" if "tokenizer.chat_template" in reader.fields else None,
    }


def load_tokenizer(path: Path, record: dict[str, Any]) -> Any:
    """The file's tokenizer, with its architecture's chat template when it has none (noted in `record`)."""
    from finetune.train import load_tokenizer as load

    tokenizer = load(Path(path).parent, gguf_file=Path(path).name)
    if not tokenizer.chat_template:
        name, template = template_for(record["architecture"])
        tokenizer.chat_template = template
        record["chat_template"] = f"{name} (added: the file has none)"
        log.info("prepare: %s has no chat template; using the %s template of architecture %s",
                 Path(path).name, name, record["architecture"])
    return tokenizer


def dequantize(path: Path, dest: Path, tokenizer: Any, record: dict[str, Any],
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the float32 model and `tokenizer` to `dest`; kept as is when `previous` recorded the same file."""
    from finetune.train import load_model

    dest = Path(dest)
    if previous and previous.get("sha256") == record["sha256"] and (dest / "config.json").is_file():
        return previous  # --resume: already de-quantized from this very file
    started = time.perf_counter()
    model = load_model(Path(path).parent, "float32", "cpu", gguf_file=Path(path).name)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # whole or absent: a resumed run never trusts half a copy
    params = sum(p.numel() for p in model.parameters())
    record = {**record, "dir": dest.name, "parameters": params, "seconds": round(time.perf_counter() - started, 3)}
    log.info("prepare: de-quantized %s (%s, %s) to float32 %s: %s parameters in %.1f s", Path(path).name,
             record["architecture"], record["file_type"], type(model).__name__, f"{params:,}", record["seconds"])
    return record
