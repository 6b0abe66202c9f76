"""The run's record, `DIR/manifest.json`: inputs, config, losses, verification figures, files with sha256.

It is also the hand-over between stages run one at a time: each stage reads what the previous one wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.data import sha256_file
from finetune.errors import UsageError

MANIFEST = "manifest.json"


@dataclass
class Manifest:
    name: str
    base: str
    created: str = field(default_factory=lambda: now())
    # a GGUF base: the file (path, sha256, architecture, file_type, tensor_types), where its chat template came
    # from, and DIR/base/ it was de-quantized to in float32; empty for a transformers base
    dequantized_from: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # path, sha256, counts, tokens, end_of_turn
    config: dict[str, Any] = field(default_factory=dict)
    quants: list[str] = field(default_factory=list)
    losses: dict[str, Any] = field(default_factory=dict)  # val_before, val_after, train curve, throughput
    exports: dict[str, Any] = field(default_factory=dict)  # quant -> {"file", "tensor_types"}
    verification: dict[str, Any] = field(default_factory=dict)  # quant -> Verification.to_dict()
    # --eval: request, case sets, the base's figures and each file's (gain, forgetting, why the gate refused it)
    evaluation: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)  # stage -> {"seconds", "finished"}
    files: dict[str, str] = field(default_factory=dict)  # path relative to DIR -> sha256
    registry: str | None = None  # the registry file written for the bot

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, out: Path) -> Path:
        return write_json_atomic(Path(out) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, out: Path) -> Manifest:
        path = Path(out) / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{path} does not exist; run `prepare` (or the whole pipeline) first") from None
        except ValueError as exc:
            raise UsageError(f"{path} is not valid JSON ({exc}); start a new run in another --out") from None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def hash_files(self, out: Path, paths: list[Path]) -> None:
        """Record the sha256 of `paths` (files, or every file under a directory) relative to `out`."""
        out = Path(out)
        for path in paths:
            found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in found:
                self.files[file.relative_to(out).as_posix()] = sha256_file(file)
        self.files = dict(sorted(self.files.items()))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, obj: Any) -> Path:
    """Write JSON to a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
