"""Guards on a level's event stream: loops cut as they stream, the wrong language regenerated, invented figures
marked. Built on agents/checks (the offline evaluation calls the same functions on the raw answers).

`guard_stream` wraps one turn. The loop detector sees every text delta: once it is sure, the level's stream is
closed at once (a local worker stops decoding, a cloud stream is closed) and `GuardAction("loops", "cut", keep)`
tells the caller how much of the answer to keep; the same happens when an agent calls one tool with the same
arguments three times in a row. The language guard checks the first `DRIFT_LETTERS` letters as they stream (a
visibly drifting answer is stopped early) and the finished answer; a wrong one is generated once more with an
explicit instruction (`GuardAction("language", "restart")` first), and if that is still wrong the better of the
two is kept and marked (`"kept"`). The number guard runs on the final answer of a grounded level (rag, agent):
figures that the question, the history, the passages and the tool results do not state are reported with their
offsets (`"marked"`), never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from agents.checks.language import Language, wrong_language
from agents.checks.numbers import extract_numbers, invented_numbers
from agents.checks.repetition import LoopDetector, repeated_tool_calls
from agents.checks.text import cyrillic_share
from agents.types import GuardAction, Passages, ReplyEvent, Sources, TextDelta, ToolStep, Turn

__all__ = ["DRIFT_LETTERS", "GuardConfig", "guard_stream", "insert_marks", "language_instruction"]

DRIFT_LETTERS = 200  # letters of a streaming answer read before calling it drifting into the wrong language
_INSTRUCTIONS = {
    "ru": "Answer in Russian only (Cyrillic letters), whatever language the sources or earlier answers use.",
    "en": "Answer in English only, whatever language the sources or earlier answers use.",
}


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Which guards watch a turn. `language`: the expected language (None: not checked)."""

    loops: bool = True
    language: Language | None = None
    numbers: bool = True


def language_instruction(lang: Language) -> str:
    """The corrective instruction added to the user's message when an answer is generated again."""
    return _INSTRUCTIONS[lang]


def insert_marks(text: str, marks: Sequence[int], marker: str = "⚠") -> str:
    """`text` with `marker` inserted at each offset in `marks` (offsets into the original text)."""
    out, last = [], 0
    for offset in sorted(set(marks)):
        if 0 < offset <= len(text):
            out += [text[last:offset], marker]
            last = offset
    return "".join(out) + text[last:]


def _expected_share(text: str, lang: Language) -> float:
    """How much of the text is written in the expected script: the measure of "the better of two" answers."""
    share = cyrillic_share(text)
    return share if lang == "ru" else 1.0 - share


@dataclass(slots=True)
class _Attempt:
    text: str = ""
    events: list[ReplyEvent] | None = None  # sources and passages of this attempt, re-sent if it is kept
    finished: bool = False


async def guard_stream(start: Callable[[str | None], AsyncIterator[ReplyEvent]], config: GuardConfig, *,
                       question: str, history: Sequence[Turn], grounded: bool) -> AsyncIterator[ReplyEvent]:
    """The events of `start(None)` with the guards of `config` applied; `start(instruction)` regenerates."""
    attempts: list[_Attempt] = []
    sources: list[str] = [question, *(turn.content for turn in history)]
    instruction: str | None = None
    while True:
        attempt = _Attempt(events=[])
        attempts.append(attempt)
        retry_allowed = config.language is not None and len(attempts) == 1
        detector = LoopDetector() if config.loops else None
        parts: list[str] = []
        model_parts: list[str] = []  # what the model wrote: the level's own notes are not judged
        own: list[str] = []
        tool_calls: list[dict[str, str]] = []  # per attempt: a regenerated answer may call the same tools again
        letters = 0
        drift_checked = False
        cut: int | None = None
        stream = start(instruction)
        async with contextlib.aclosing(stream):  # closing it stops the model (the worker stops decoding)
            async for event in stream:
                yield event
                if isinstance(event, TextDelta) and event.own:
                    parts.append(event.text)
                    own.append(event.text)
                elif isinstance(event, TextDelta):
                    parts.append(event.text)
                    model_parts.append(event.text)
                    if detector is not None and (found := detector.feed(event.text)) is not None:
                        cut = found
                        break
                    if retry_allowed and not drift_checked:
                        letters += sum(ch.isalpha() for ch in event.text)
                        if letters >= DRIFT_LETTERS:
                            drift_checked = True
                            if wrong_language("".join(model_parts), config.language):  # type: ignore[arg-type]
                                break  # visibly drifting: stopped here, generated again below
                elif isinstance(event, ToolStep):
                    sources.append(event.output)
                    tool_calls.append({"name": event.tool, "args": event.input})
                    if config.loops and repeated_tool_calls(tool_calls):
                        cut = len("".join(parts))
                        break
                elif isinstance(event, Passages):
                    sources.extend(event.texts)
                    attempt.events.append(event)  # type: ignore[union-attr]
                elif isinstance(event, Sources):
                    attempt.events.append(event)  # type: ignore[union-attr]
            else:
                attempt.finished = True
        attempt.text = "".join(parts)
        written = "".join(model_parts)
        if cut is not None:
            yield GuardAction("loops", "cut", keep=cut)
            return
        lang = config.language
        if lang is not None and wrong_language(written, lang):
            if retry_allowed:
                yield GuardAction("language", "restart", lang=lang)
                instruction = language_instruction(lang)
                continue
            first = attempts[0]
            if first.finished and _expected_share(first.text, lang) > _expected_share(attempt.text, lang):
                # the first answer was closer to the expected language: show it again instead
                yield GuardAction("language", "restart", lang=lang)
                for event in first.events or []:
                    yield event
                yield TextDelta(first.text)
                attempt = first
            yield GuardAction("language", "kept", lang=lang)
        if config.numbers and grounded and attempt.text:
            invented = invented_numbers(attempt.text, [*sources, *own])
            if invented:
                marks = tuple(m.start + len(m.text) for m in extract_numbers(attempt.text) if m.text in invented)
                yield GuardAction("numbers", "marked", numbers=tuple(invented), marks=marks)
        return
