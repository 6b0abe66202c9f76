"""Register a fine-tuned model for the bot: `<data_dir>/finetuned/<name>.json`, read on each /mode listing.

    {"name": ..., "gguf": "<abs path of the preferred file>", "files": {quant: abs path}, "base": ..., "created": ...}
"""

from __future__ import annotations

import os
import re
from pathlib import Path

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


def register(name: str, files: dict[str, Path], base: str, data_dir: Path) -> Path:
    """Write the registry entry atomically (a running bot never reads half a file); return its path."""
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
    return write_json_atomic(Path(data_dir) / "finetuned" / f"{name}.json", entry)
