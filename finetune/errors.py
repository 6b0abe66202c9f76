"""Errors of the finetune package.

    FinetuneError
    ├── UsageError          bad input from the user: arguments, paths, an out dir in the wrong state (exit 2)
    │   ├── ConfigError     unknown config key, wrong type, bad value
    │   └── DataError       the training file has bad lines (lists every bad line number)
    ├── ConverterError      llama.cpp's converter could not be fetched or failed
    └── VerificationError   a GGUF disagrees with the merged HF model beyond tolerance
"""

from __future__ import annotations


class FinetuneError(Exception):
    """Base of everything `finetune/` raises on purpose."""


class UsageError(FinetuneError):
    """The user asked for something that cannot run as given; the message says what to change."""


class ConfigError(UsageError):
    pass


class DataError(UsageError):
    """Bad lines in a JSONL file: `problems` holds (line number, what is wrong), sorted by line."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = sorted(problems)
        self.lines = sorted({line for line, _ in self.problems})
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        text = "\n".join(f"  line {line}: {what}" for line, what in shown)
        if more:
            text += f"\n  ... and {more} more"
        super().__init__(
            f"{path}: {len(self.lines)} bad line(s) {_compact(self.lines)}; nothing was started.\n{text}"
        )


class ConverterError(FinetuneError):
    pass


class VerificationError(FinetuneError):
    pass


def _compact(lines: list[int]) -> str:
    """`[2, 5, 9]` as text, shortened when long."""
    head = ", ".join(str(n) for n in lines[:20])
    return f"({head}{', ...' if len(lines) > 20 else ''})"
