"""Evaluation cases: one JSON object per line (or a CSV with the same columns), validated before anything runs.

`{"id": "q17", "question": "...", "expected": "..." | ["...", ...], "match": "contains", "lang": "ru",
  "history": [{"role": "user", "content": "..."}], "tags": ["numbers"]}`: only `question` is required.
Every problem of a file is reported at once, with its line number, so a team fixes the file in one pass.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.checks.language import detect_language
from agents.types import Turn

MATCH_KINDS = ("contains", "exact", "regex", "number", "judge", "refusal")
KEYS = {"id", "question", "expected", "match", "lang", "history", "tags"}
LANGS = ("ru", "en")
MAX_CASES = 5000
MAX_FIELD_CHARS = 20_000


class CasesError(ValueError):
    """A cases file that cannot be run; `problems` lists every offending line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__("invalid cases file:\n" + "\n".join(shown) + more)


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    question: str
    expected: tuple[str, ...] = ()
    match: str = "judge"
    lang: str = "en"
    history: tuple[Turn, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)


def load_cases(path: str | Path) -> list[Case]:
    """Read and validate a `.jsonl` or `.csv` cases file (the kind is told by its content, not only its name)."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CasesError(["the file is not UTF-8 text"]) from None
    return parse_cases(text, csv_format=_looks_like_csv(Path(path), text))


def _looks_like_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    return not first.lstrip().startswith("{") and "question" in [cell.strip().lower() for cell in first.split(",")]


def parse_cases(text: str, *, csv_format: bool = False) -> list[Case]:
    rows = _csv_rows(text) if csv_format else _jsonl_rows(text)
    problems: list[str] = []
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):
            problems.append(f"line {line}: {row}")
            continue
        try:
            case = _case(row, line)
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if case.id in seen:
            problems.append(f"line {line}: id {case.id!r} repeats line {seen[case.id]}")
            continue
        seen[case.id] = line
        cases.append(case)
    if not rows:
        problems.append("the file has no cases")
    if len(rows) > MAX_CASES:
        problems.append(f"too many cases ({len(rows)}); the limit is {MAX_CASES}")
    if problems:
        raise CasesError(problems)
    return cases


def _jsonl_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((number, f"bad JSON ({exc.msg})"))
            continue
        rows.append((number, value if isinstance(value, dict) else "a case must be a JSON object"))
    return rows


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text))
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for record in reader:
        line = reader.line_num
        if None in record:
            rows.append((line, "more cells than columns"))
            continue
        row: dict[str, Any] = {}
        problem = ""
        for key, cell in record.items():
            cell = (cell or "").strip()
            if not cell:
                continue
            if key in ("history", "expected") and cell.startswith("["):
                try:
                    row[key] = json.loads(cell)
                except json.JSONDecodeError:
                    problem = f"column {key!r} is not a JSON list"
            elif key == "tags":
                row[key] = [tag.strip() for tag in re.split(r"[,;]", cell) if tag.strip()]
            else:
                row[key] = cell
        rows.append((line, problem or row))
    return rows


def _case(row: dict[str, Any], line: int) -> Case:
    unknown = sorted(set(row) - KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' is missing or empty")
    expected = row.get("expected", ())
    if isinstance(expected, str):
        expected = (expected,)
    if not isinstance(expected, list | tuple) or not all(isinstance(e, str | int | float) for e in expected):
        raise ValueError("'expected' must be a string or a list of strings")
    expected = tuple(str(e) for e in expected if str(e).strip())
    match = row.get("match") or ("contains" if expected else "judge")
    if match not in MATCH_KINDS:
        raise ValueError(f"unknown match {match!r} (one of: {', '.join(MATCH_KINDS)})")
    if match in ("contains", "exact", "regex", "number") and not expected:
        raise ValueError(f"match {match!r} needs 'expected'")
    if match == "regex":
        for pattern in expected:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    lang = row.get("lang") or detect_language(question) or "en"
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r} (one of: {', '.join(LANGS)})")
    history = _history(row.get("history", []))
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("'tags' must be a list of strings")
    case_id = str(row.get("id") or f"line{line}")
    if any(len(s) > MAX_FIELD_CHARS for s in (question, *expected)):
        raise ValueError(f"a field is longer than {MAX_FIELD_CHARS} characters")
    return Case(id=case_id, question=question.strip(), expected=expected, match=match, lang=lang,
                history=history, tags=tuple(tags))


def _history(value: Any) -> tuple[Turn, ...]:
    if not isinstance(value, list):
        raise ValueError("'history' must be a list of {role, content} objects")
    turns = []
    for item in value:
        if (not isinstance(item, dict) or item.get("role") not in ("user", "assistant")
                or not isinstance(item.get("content"), str) or set(item) - {"role", "content"}):
            raise ValueError("'history' items must be {\"role\": \"user\"|\"assistant\", \"content\": \"...\"}")
        turns.append(Turn(item["role"], item["content"]))
    return tuple(turns)
