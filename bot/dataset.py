"""The dataset people's verdicts make: SFT, DPO and KTO files from votes, 👍/👎 and corrections.

    sft  {"messages": [system?, ...history, user, assistant]}   an answer that won a vote, earned 👍, or a correction
    dpo  {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}   vote winner/loser, correction/original
    kto  {"prompt": [...], "completion": [assistant], "label": true|false}   👍 / 👎

Every line also has "meta": {"source", "mode", "raters"}; raters are salted hashes, never Telegram ids.
Rows are read in pages, each page one short unit of work (`Database.run`); checks and JSON run in a worker
thread; the file is written beside its target and renamed into place when complete, so an empty or failed export
leaves nothing half-written. `export_dataset` is a coroutine: the bot's /export awaits it as the CLI does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import sys
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

from agents.checks.language import detect_language, wrong_language
from agents.checks.numbers import invented_numbers
from agents.checks.repetition import find_loop
from bot.storage import Database, repo

Kind = Literal["sft", "dpo", "kto"]
KINDS: tuple[Kind, ...] = ("sft", "dpo", "kto")
PAGE = 2000  # rows per unit of work: short enough for the bot's event loop, long enough to amortise a query
HISTORY_MESSAGES = 40  # turns of history kept before a rated answer (the bot sends fewer: a token budget)
SALT_FILE = "dataset_salt"


class EmptyExport(Exception):
    """Nothing matched: no file is written."""


@dataclass(frozen=True)
class ExportOptions:
    kind: Kind
    since: datetime | None = None
    mode: str | None = None  # "LEVEL MODEL": only answers this mode wrote
    min_votes: int = 1  # a vote win, 👍 or 👎 needs this many people behind it (a correction stands alone)
    lang: str | None = None  # the question's language
    keep_flagged: bool = False  # keep answers that fail the symptom checks


@dataclass
class ExportResult:
    path: Path
    kind: Kind
    written: int = 0
    per_mode: Counter[str] = field(default_factory=Counter)
    per_source: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # why candidates were left out

    def summary(self) -> str:
        """What the export wrote and left out, one line each."""
        lines = [f"{self.kind}: {self.written} examples -> {self.path}"]
        lines += [f"  mode {mode}: {n}" for mode, n in sorted(self.per_mode.items())]
        lines += [f"  from {source}: {n}" for source, n in sorted(self.per_source.items())]
        lines += [f"  left out ({why}): {n}" for why, n in sorted(self.skipped.items())]
        return "\n".join(lines)


def load_salt(data_dir: Path, configured: str | None = None) -> bytes:
    """The salt for raters' hashes: DATASET_SALT, else one generated once into DATA_DIR (kept private).

    The file appears whole or not at all (written aside, then linked into place: the first process wins and the
    others use its salt), so no reader ever gets an empty salt, which would leave the hashes unkeyed.
    """
    if configured:
        return configured.encode()
    path = Path(data_dir) / SALT_FILE
    with contextlib.suppress(FileNotFoundError):
        if salt := path.read_bytes().strip():
            return salt
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{SALT_FILE}.{secrets.token_hex(8)}")
    with os.fdopen(os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(secrets.token_hex(32).encode())
    try:
        try:
            os.link(aside, path)
        except FileExistsError:
            if not path.read_bytes().strip():  # an empty file, as an older release left it when it crashed
                os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)
    return path.read_bytes().strip()


def normalize_mode(mode: str | None) -> str | None:
    return " ".join(mode.split()) if mode and mode.strip() else None


@dataclass(frozen=True)
class Candidate:
    """One example before the filters: the prompt, the answers, and what the checks need to know."""

    source: str  # vote | feedback | correction
    mode: str  # the mode that wrote the (chosen) answer
    modes: tuple[str, ...]  # every mode whose answer is in it (for --mode)
    prompt: list[dict[str, str]]
    question: str
    answer: str  # sft: the answer; dpo: chosen; kto: completion
    rejected: str | None = None
    label: bool | None = None
    raters: tuple[int, ...] = ()
    human_answer: bool = False  # a person wrote the answer (a correction): it may state figures no source has


class Builder:
    """Turns pages of stored rows into JSON lines of one kind, applying the filters and counting."""

    def __init__(self, options: ExportOptions, salt: bytes, result: ExportResult) -> None:
        self.options, self.salt, self.result = options, salt, result
        self.mode = normalize_mode(options.mode)
        self.seen: set[bytes] = set()  # 16-byte digests: the file's own size bounds it
        self._lang_cache: dict[str, str | None] = {}

    # --- candidates from votes --------------------------------------------------------------------------------
    def from_comparisons(self, page: list[repo.VotedComparison]) -> list[str]:
        lines = []
        for c in page:
            tally = Counter(vote for _, vote in c.votes)
            if tally["a"] == tally["b"]:
                self.result.skipped["no winner"] += 1
                continue
            win, lose = ("a", "b") if tally["a"] > tally["b"] else ("b", "a")
            if tally[win] < self.options.min_votes:
                self.result.skipped["too few votes"] += 1
                continue
            if self.options.kind == "kto":
                continue  # KTO learns from 👍/👎 only
            prompt = _prompt(c.system_prompt, c.history, c.question)
            answers = {"a": (c.mode_a, c.answer_a), "b": (c.mode_b, c.answer_b)}
            raters = tuple(voter for voter, vote in c.votes if vote == win)
            # SFT holds the winner's answer only; a DPO pair holds both modes' answers
            modes = (answers[win][0],) if self.options.kind == "sft" else (c.mode_a, c.mode_b)
            lines += self._emit(Candidate("vote", answers[win][0], modes, prompt, c.question,
                                          answers[win][1], rejected=answers[lose][1], raters=raters))
        return lines

    # --- candidates from feedback: walks chats in order, keeping each chat's recent turns -----------------------
    def from_messages(self, page: list[repo.ChatMessage], state: _ChatWalk) -> list[str]:
        lines = []
        for m in page:
            if m.chat_id != state.chat_id:
                state.reset(m.chat_id)
            if m.role == "assistant" and m.feedback:
                lines += self._rated(m, state)
            state.previous = m
            if m.complete:
                state.turns.append({"role": m.role, "content": m.content})
        return lines

    def _rated(self, m: repo.ChatMessage, state: _ChatWalk) -> list[str]:
        prev = state.previous
        if prev is None or prev.role != "user" or not prev.content.strip():
            self.result.skipped["no question"] += 1
            return []
        history = list(state.turns)
        if prev.complete and history:
            history.pop()  # the question itself: it goes last
        system = next((f.system_prompt for f in reversed(m.feedback) if f.system_prompt), None)
        prompt = _prompt(system, history, prev.content)
        verdicts: dict[int, str] = {}  # one per person: a correction or a 👎 outweighs their 👍
        for f in m.feedback:
            if f.kind == "correction" or f.rating == "down":
                verdicts[f.user_id] = "down"
            else:
                verdicts.setdefault(f.user_id, "up")
        ups = [u for u, v in verdicts.items() if v == "up"]
        downs = [u for u, v in verdicts.items() if v == "down"]
        corrections = [f for f in m.feedback if f.kind == "correction" and f.correction]
        kind, n, out = self.options.kind, self.options.min_votes, []
        if kind in ("sft", "dpo") and corrections:
            fix = corrections[-1]
            out += self._emit(Candidate("correction", m.mode, (m.mode,), prompt, prev.content, fix.correction or "",
                                        rejected=fix.original or m.content, raters=(fix.user_id,),
                                        human_answer=True))
        if kind == "sft" and len(ups) > len(downs):
            if len(ups) < n:
                self.result.skipped["too few votes"] += 1
            elif not m.complete:
                self.result.skipped["unfinished answer"] += 1
            else:
                out += self._emit(Candidate("feedback", m.mode, (m.mode,), prompt, prev.content, m.content,
                                            raters=tuple(ups)))
        if kind == "kto" and len(ups) != len(downs):
            label = len(ups) > len(downs)
            raters = ups if label else downs
            if len(raters) < n:
                self.result.skipped["too few votes"] += 1
            elif label and not m.complete:
                self.result.skipped["unfinished answer"] += 1
            else:
                # 👍 and 👎 judged the model's text, the one Telegram shows: a correction has since replaced it in
                # the stored message only
                original = next((f.original for f in reversed(corrections) if f.original), None)
                completion = original or m.content
                out += self._emit(Candidate("feedback", m.mode, (m.mode,), prompt, prev.content, completion,
                                            label=label, raters=tuple(raters)))
        return out

    # --- filters, checks, JSON ------------------------------------------------------------------------------
    def _language(self, text: str) -> str | None:
        if text not in self._lang_cache:
            if len(self._lang_cache) > 10_000:
                self._lang_cache.clear()
            self._lang_cache[text] = detect_language(text)
        return self._lang_cache[text]

    def _emit(self, c: Candidate) -> list[str]:
        if self.mode is not None and self.mode not in c.modes:
            self.result.skipped["other mode"] += 1
            return []
        checked = not self.options.keep_flagged and c.label is not False
        # the language is only worked out when something needs it: it is the costliest step after the checks
        lang = self._language(c.question) if checked or self.options.lang else None
        if self.options.lang is not None and lang != self.options.lang:
            self.result.skipped["other language"] += 1
            return []
        record = _record(self.options.kind, c)
        if record is None:
            self.result.skipped["empty text"] += 1
            return []
        text = json.dumps(record, ensure_ascii=False)  # key order is fixed by _record: equal examples, equal text
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if key in self.seen:
            self.result.skipped["duplicate"] += 1
            return []
        if checked:
            symptom = self._symptom(c, lang)
            if symptom:
                self.result.skipped[f"flagged: {symptom}"] += 1
                return []
        self.seen.add(key)
        meta = {"source": c.source, "mode": c.mode, "raters": sorted({self._hash(r) for r in c.raters})}
        self.result.written += 1
        self.result.per_mode[c.mode] += 1
        self.result.per_source[c.source] += 1
        return [f'{text[:-1]}, "meta": {json.dumps(meta, ensure_ascii=False)}}}']

    def _symptom(self, c: Candidate, lang: str | None) -> str | None:
        """The first symptom the (chosen) answer shows, by the evaluation's own checks."""
        if find_loop(c.answer) is not None:
            return "loop"
        if lang is not None and wrong_language(c.answer, lang):  # type: ignore[arg-type]
            return "wrong language"
        if not c.human_answer and invented_numbers(c.answer, [m["content"] for m in c.prompt]):
            return "invented numbers"
        return None

    def _hash(self, user_id: int) -> str:
        return hashlib.blake2b(str(user_id).encode(), key=self.salt[:64], digest_size=8).hexdigest()


@dataclass
class _ChatWalk:
    chat_id: int | None = None
    previous: repo.ChatMessage | None = None
    turns: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=HISTORY_MESSAGES))

    def reset(self, chat_id: int) -> None:
        self.chat_id, self.previous = chat_id, None
        self.turns.clear()


def _prompt(system: str | None, history: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    turns = [{"role": m["role"], "content": m["content"]} for m in history[-HISTORY_MESSAGES:]
             if m.get("role") in ("user", "assistant") and str(m.get("content", "")).strip()]
    head = [{"role": "system", "content": system}] if system and system.strip() else []
    return [*head, *turns, {"role": "user", "content": question}]


def _record(kind: Kind, c: Candidate) -> dict[str, Any] | None:
    if not c.answer.strip() or not c.question.strip() or (kind == "dpo" and not (c.rejected or "").strip()):
        return None
    answer = [{"role": "assistant", "content": c.answer}]
    if kind == "sft":
        return {"messages": [*c.prompt, *answer]}
    if kind == "dpo":
        if c.rejected is None or c.rejected.strip() == c.answer.strip():
            return None
        return {"prompt": c.prompt, "chosen": answer, "rejected": [{"role": "assistant", "content": c.rejected}]}
    return {"prompt": c.prompt, "completion": answer, "label": bool(c.label)}


async def export_dataset(db: Database, options: ExportOptions, out: Path, *, salt: bytes,
                         page_size: int = PAGE) -> ExportResult:
    """Write the dataset of `options.kind` to `out` (JSON lines); raise EmptyExport (and write nothing) if empty.

    Each page of rows is one short unit of work; the filters, checks and JSON run in a worker thread.
    """
    out = Path(out)
    result = ExportResult(out, options.kind)
    builder = Builder(options, salt, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        f = await asyncio.to_thread(open, partial, "w", encoding="utf-8")
        try:
            async for lines in _pages(db, options, builder, page_size):
                await asyncio.to_thread(f.writelines, [line + "\n" for line in lines])
        finally:
            await asyncio.to_thread(f.close)
        if result.written == 0:
            raise EmptyExport(_empty_message(result))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return result


async def _pages(db: Database, options: ExportOptions, builder: Builder, page_size: int):  # type: ignore[no-untyped-def]
    """Yield the JSON lines of each page; at most one page of rows is held at a time."""
    since = options.since
    if options.kind in ("sft", "dpo"):
        after_id = 0
        while page := await db.run(lambda s, a=after_id: repo.voted_comparisons_page(s, a, page_size, since)):
            after_id = page[-1].id
            yield await asyncio.to_thread(builder.from_comparisons, page)
    walk, after = _ChatWalk(), (-(2**63), 0)
    while rows := await db.run(lambda s, a=after: repo.feedback_chat_page(s, a, page_size, since)):
        after = (rows[-1].chat_id, rows[-1].id)
        yield await asyncio.to_thread(builder.from_messages, rows, walk)


def _empty_message(result: ExportResult) -> str:
    why = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
    return (f"nothing to export as {result.kind}: no stored votes or feedback match"
            + (f" (left out: {why})" if why else "") + "; widen --since/--mode/--lang, lower --min-votes, "
            "or add --keep-flagged")


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Read an exported file back, one example at a time."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# --- `adaptbot dataset export` ----------------------------------------------------------------------------------


def _date(value: str) -> datetime:
    from datetime import UTC

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-11-01, got {value!r}") from None
    # in UTC, as the times are stored: SQLite compares them as text, whatever offset the date was written with
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parser(kind: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser = kind(prog="adaptbot dataset", description="Datasets from votes and feedback.")
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="write SFT, DPO or KTO examples as JSON lines")
    export.add_argument("--kind", choices=KINDS, required=True)
    export.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
    export.add_argument("--since", type=_date, help="only verdicts given from this date (UTC)")
    export.add_argument("--mode", help='only answers of this mode, e.g. "prompt cloud"')
    export.add_argument("--min-votes", type=int, default=1, help="people needed behind a verdict (default 1)")
    export.add_argument("--lang", choices=["ru", "en"], help="only questions in this language")
    export.add_argument("--keep-flagged", action="store_true",
                        help="keep answers that fail the symptom checks (invented numbers, language, loops)")
    return parser


class FlagsRefused(Exception):
    """What argparse would have printed before exiting: the flags are wrong (or asked for --help)."""


class _QuietParser(argparse.ArgumentParser):
    """Raises what it would print and exit with; writes nothing to the process's stdout or stderr."""

    def error(self, message: str) -> NoReturn:
        raise FlagsRefused(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise FlagsRefused((message or "").strip())

    def _print_message(self, message: str, file: Any = None) -> None:
        pass


def export_parser() -> argparse.ArgumentParser:
    """The CLI's flags, for the bot's /export: a wrong flag raises FlagsRefused (its subparsers too: argparse makes
    them of the parser's own class) instead of printing and exiting."""
    return _parser(_QuietParser)


def cli(argv: list[str], settings: Any) -> int:
    """`adaptbot dataset export ...`: 0 when written, 2 when nothing matched or the arguments are wrong."""
    args = _parser().parse_args(argv)
    if args.min_votes < 1:
        print("adaptbot dataset: --min-votes must be 1 or more", file=sys.stderr)
        return 2
    options = ExportOptions(kind=args.kind, since=args.since, mode=args.mode, min_votes=args.min_votes,
                            lang=args.lang, keep_flagged=args.keep_flagged)
    configured = settings.dataset_salt.get_secret_value() if settings.dataset_salt else None
    salt = load_salt(settings.data_dir, configured)

    async def run() -> ExportResult:
        db = Database(settings.db_url)
        try:
            await db.create_all()
            return await export_dataset(db, options, args.out, salt=salt)
        finally:
            await db.dispose()

    try:
        result = asyncio.run(run())
    except EmptyExport as exc:
        print(f"adaptbot dataset: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0
