"""Register a fine-tuned model for the bot: `<data_dir>/finetuned/<name>.json`, read on each /mode listing.

    {"name": ..., "gguf": "<abs path of the preferred file>", "files": {quant: abs path}, "base": ..., "created": ...,
     "eval": {"gain": 0.18, "cases": 40, ...} (with --eval: the served file's), "manifest": "<the run's manifest>"}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from finetune.errors import UsageError
from finetune.manifest import now, write_json_atomic

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PREFERENCE = ("q8_0", "f16")  # q8_0: near-f16 quality at half the size; then f16; then whatever there is


def check_name(name: str) -> str:
    if not NAME.match(name) or name.endswith(".json"):
        raise UsageError(
            f"bad model name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def default_data_dir() -> Path:
    """DATA_DIR from the environment, else ./data (read when called, never at import)."""
    return Path(os.environ.get("DATA_DIR") or "./data")


def preferred(files: dict[str, Path]) -> Path:
    for quant in PREFERENCE:
        if quant in files:
            return files[quant]
    return next(iter(files.values()))


def register(name: str, files: dict[str, Path], base: str, data_dir: Path,
             evaluation: dict[str, dict[str, Any]] | None = None, manifest: Path | None = None) -> Path:
    """Write the registry entry atomically (a running bot never reads half a file); return its path.

    `evaluation`: per quant, what /mode shows of the served file (`{"gain", "cases", ...}`).
    """
    check_name(name)
    if not files:
        raise UsageError("no verified GGUF file to register")
    absolute = {quant: str(Path(path).resolve()) for quant, path in files.items()}
    entry = {
        "name": name,
        "gguf": str(Path(preferred(files)).resolve()),
        "files": absolute,
        "base": base,
        "created": now(),
    }
    served = next(quant for quant, path in files.items() if path == preferred(files))
    if evaluation and served in evaluation:
        entry["eval"] = evaluation[served]
    if manifest is not None:
        entry["manifest"] = str(Path(manifest).resolve())
    return write_json_atomic(Path(data_dir) / "finetuned" / f"{name}.json", entry)
