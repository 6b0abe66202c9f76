"""What every loader returns (`Extracted`), the kinds there are, and the checks on a file's name."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from knowledge.errors import (
    UnsafeFileNameError,
)

KINDS = ("text", "markdown", "pdf", "docx", "html")


@dataclass(slots=True)
class Extracted:
    """Text extracted from one file: sections in document order, each with its page (PDF) or None."""

    kind: str
    sections: list[tuple[int | None, str]] = field(default_factory=list)
    pages: int | None = None
    encoding: str | None = None

    @property
    def chars(self) -> int:
        return sum(len(text) for _, text in self.sections)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "sections": self.sections, "pages": self.pages, "encoding": self.encoding}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Extracted:
        sections = [(None if p is None else int(p), str(t)) for p, t in obj["sections"]]
        return cls(
            kind=str(obj["kind"]), sections=sections, pages=obj.get("pages"), encoding=obj.get("encoding")
        )


def check_filename(name: str) -> None:
    """Refuse a name with a directory part, a traversal or control characters (never sent by real clients)."""
    if (
        re.search(r"[\\/]", name)
        or name.strip() in (".", "..")
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        raise UnsafeFileNameError(
            f"The file name {sanitize_filename(name)!r} contains a path or control characters; "
            "rename the file and send it again."
        )


def sanitize_filename(name: str | None, default: str = "document") -> str:
    """A display name safe to show and store: no directories, control characters or leading dots."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]  # both separators: a Windows path arrives on Linux too
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # controls, bidi overrides, ...
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 120 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:120]
    return name or default
