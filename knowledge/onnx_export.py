"""Export a sentence-transformers model to ONNX once (optionally int8-quantized), cached in a folder per model.

The whole sentence-transformers pipeline (transformer, pooling, normalization) becomes one graph, so any
pooling the model declares is kept. Files are written under temporary names and renamed into place, so a
crash or a second process exporting at the same time never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INFO = "export.json"


def cache_key(target: str, version: str) -> str:
    """A folder name that changes when the model's files change (a local model) or its name does (a hub name)."""
    digest = hashlib.sha256(f"{version}\n{target}".encode())
    path = Path(target)
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                stat = file.stat()
                digest.update(f"\n{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.name or target)[:40]
    return f"{name}-{digest.hexdigest()[:16]}"


def model_file(folder: Path, quantized: bool) -> Path:
    return folder / ("model-int8.onnx" if quantized else "model.onnx")


def read_info(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / _INFO).read_text("utf-8")))


def is_complete(folder: Path, quantized: bool) -> bool:
    """Whether a finished export (the graph, its tokenizer and its description) is in `folder`."""
    return all(f.is_file() for f in (model_file(folder, quantized), folder / "tokenizer.json", folder / _INFO))


def export(target: str, folder: Path, quantized: bool, load: Callable[[str], Any]) -> None:
    """Write the float32 graph (and the int8 one when `quantized`) with the tokenizer into `folder`.

    `load(target)` returns the loaded torch model wrapper (it has `.model`, a SentenceTransformer)."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = model_file(folder, False)
    if not is_complete(folder, False):
        _export_fp32(load(target).model, folder)
    if quantized and not model_file(folder, True).is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _temporary(model_file(folder, True)) as tmp:
            # int8 weights, activations quantized per batch at run time: no calibration data needed
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8)


def _export_fp32(model: Any, folder: Path) -> None:
    import torch

    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise RuntimeError("the model has no fast tokenizer (tokenizer.json), which the ONNX backend needs")

    class Pipeline(torch.nn.Module):
        """The sentence-transformers modules as one forward over tensors."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(features)["sentence_embedding"]

    sample = tokenizer(["a short text", "a somewhat longer text to trace"], padding=True, return_tensors="pt")
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    pipeline = Pipeline().eval()
    dynamic = {name: {0: "batch", 1: "sequence"} for name in _INPUTS} | {"sentence_embedding": {0: "batch"}}
    with _temporary(model_file(folder, False)) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in transformers
        torch.onnx.export(
            pipeline, tuple(sample[name] for name in _INPUTS), tmp, dynamo=False, input_names=list(_INPUTS),
            output_names=["sentence_embedding"], dynamic_axes=dynamic, opset_version=17,
        )  # fmt: skip
    with tempfile.TemporaryDirectory(dir=folder) as tmp_dir:
        tokenizer.save_pretrained(tmp_dir)
        os.replace(Path(tmp_dir) / "tokenizer.json", folder / "tokenizer.json")
    info = {
        "max_seq_length": int(model.max_seq_length),
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
        "dimension": int(model.get_embedding_dimension()),
    }
    with _temporary(folder / _INFO) as tmp:
        Path(tmp).write_text(json.dumps(info), "utf-8")


class _temporary:
    """A temporary path next to `final`, renamed onto it when the block succeeds, removed when it fails."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")

    def __enter__(self) -> str:
        return str(self.tmp)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.final)
        else:
            self.tmp.unlink(missing_ok=True)
