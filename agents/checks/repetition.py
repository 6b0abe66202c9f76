"""Degenerate repetition: a finished answer's looping tail, a streamed answer's loop as it happens, tool-call loops.

A loop is text that has become periodic: from some offset on, every character equals the one `p` characters
before it. The detector looks for the shortest such period at the end of the stream (the last few characters
looked up with `str.rfind` among the previous `MAX_PERIOD`, then one slice comparison per candidate), so each
delta costs a few microseconds whatever its length. It reports the offset where the redundant copy begins,
so `text[:offset]` keeps one copy of what was repeated.

How long the periodic run must be before we are sure, for a repeated unit of `p` characters:
`clamp((COPIES - 1) * p, MIN_RUN, MAX_RUN)` characters after the first copy. So a repeated word or phrase
needs `MIN_RUN` (refrains like "Let it snow! Let it snow! Let it snow!" or "на-на-на" are shorter), a sentence
needs three copies, and a long paragraph is cut `MAX_RUN` characters into its second copy (a chorus repeated
once, as songs do, stays under it unless it is longer than `MAX_RUN`). The figures were tuned on half of
tests/data with bench/bench_guards.py: COPIES = 2 cuts songs whose chorus is sung twice in a row; with three
copies MIN_RUN 40, 60 and 80 cut no clean answer and the same median distance (80 kept, the most cautious of
them), 100 and 120 cut later; MAX_RUN 280 let some loops run past 270 characters. On the held-out half: no
false cut in 116 answers, every one of 100 loops cut, at most 256 characters after it started (median 92).

gemini-cli's loop detection service (packages/core/src/services/loopDetectionService.ts) hashes 50-character
chunks and calls a loop when one chunk recurs 10 times about 250 characters apart or closer, which needs 500 or
more characters of loop; it stops tracking inside code fences and restarts at every table, list item, heading
or quote. Looking for the period directly is what brings the cut under 300 characters; tracking prose, and code
and tables, as separate streams keeps a loop that spans a list or a code block visible.

Legitimate repetition: fenced code and markdown tables repeat by nature, so they are checked only for very
long exact runs (`CODE_RUN`); divider lines (`-----`, `=====`) are skipped; list numbering at the start of a
line (`1.`, `2)`) is read as `#.`, so a list that keeps repeating the same item under new numbers is a loop while
a list of different items is not. As in gemini-cli's loop detection service, tool calls repeated with the same
arguments are a loop of their own (`repeated_tool_calls`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CODE_RUN", "COPIES", "MAX_PERIOD", "MAX_RUN", "MIN_RUN", "LoopDetector", "find_loop",
           "repeated_tool_calls"]

MIN_RUN = 80
MAX_RUN = 250
COPIES = 3
MAX_PERIOD = 1200
CODE_RUN = 1000
_KEY = 12  # characters at the end of the stream looked up to find candidate periods
_CANDIDATES = 4  # most recent earlier occurrences of the key tried as periods
_PEEK = 8  # characters of a line read before deciding what kind of line it is
_UNDECIDED_MAX = 200  # a divider-looking line longer than this is read as text (a run of "=" is a loop too)
_DIVIDER_RE = re.compile(r"[\s\-_=*#~+.·•—–─━═]*")
_LIST_NUMBER_RE = re.compile(r"^(\s*)\d{1,3}([.)]\s)")


class _Track:
    """Text of one kind (prose, or code and tables) with the raw offset of each piece, bounded in size."""

    def __init__(self, min_run: int, max_run: int, copies: int) -> None:
        self.min_run, self.max_run, self.copies = min_run, max_run, copies
        self.text = ""
        self.base = 0  # characters dropped from the front
        self.pieces: list[tuple[int, int]] = []  # (absolute index in the track, raw offset), ascending
        self.window = MAX_PERIOD + max_run + _KEY

    def add(self, piece: str, raw_offset: int) -> None:
        if not piece:
            return
        self.pieces.append((self.base + len(self.text), raw_offset))
        self.text += piece
        if len(self.text) > 2 * self.window:
            cut = len(self.text) - self.window
            self.text, self.base = self.text[cut:], self.base + cut
            keep = 0
            while keep + 1 < len(self.pieces) and self.pieces[keep + 1][0] <= self.base:
                keep += 1
            del self.pieces[:keep]

    def raw(self, index: int) -> int:
        """The raw offset of the track's character at `index` (relative to the current text)."""
        absolute = self.base + index
        start, raw = self.pieces[0]
        for piece_start, piece_raw in self.pieces:
            if piece_start > absolute:
                break
            start, raw = piece_start, piece_raw
        return raw + max(0, absolute - start)

    def loop_start(self) -> int | None:
        """Raw offset where a periodic tail long enough to be sure of begins, if the text ends in one."""
        text, n = self.text, len(self.text)
        if n < self.min_run + 1 + _KEY:
            return None
        tail = text[n - _KEY:]
        low = max(0, n - MAX_PERIOD - _KEY)
        end = n - 1
        for _ in range(_CANDIDATES):
            j = text.rfind(tail, low, end)
            if j < 0:
                return None
            period = n - _KEY - j
            run = min(max((self.copies - 1) * period, self.min_run), self.max_run)
            if n - run - period >= 0 and text[n - run:] == text[n - run - period:n - period]:
                i = n - run - 1
                while i - period >= 0 and text[i] == text[i - period]:
                    i -= 1
                return self.raw(i + 1)
            end = j + _KEY - 1
        return None


class LoopDetector:
    """Feed an answer's text deltas as they stream; `feed` returns the loop's offset once it is sure."""

    def __init__(self, min_run: int = MIN_RUN, max_run: int = MAX_RUN, copies: int = COPIES) -> None:
        self._prose = _Track(min_run, max_run, copies)
        self._verbatim = _Track(CODE_RUN, CODE_RUN, copies)
        self._pos = 0
        self._line = ""  # the current line while its kind is undecided
        self._line_start = 0
        self._kind: str | None = None  # "prose", "verbatim" or "skip" for the rest of the current line
        self._in_code = False
        self.offset: int | None = None  # where the redundant copy begins
        self.detected_at: int | None = None  # how much of the stream had been fed when the loop was found

    def feed(self, delta: str) -> int | None:
        """Take the next piece of the stream (checked at its end); the loop's offset once found, then on every call."""
        if self.offset is not None:
            return self.offset
        if self._kind is not None and "\n" not in delta:
            # The common case, kept short: a token inside a line whose kind is known.
            start = self._pos
            self._pos += len(delta)
            if self._kind == "skip":
                return None
            track = self._prose if self._kind == "prose" else self._verbatim
            track.add(delta, start)
            return self._found(track.loop_start())
        parts = delta.split("\n")
        pieces = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        touched: list[_Track] = []
        for piece in pieces:
            start = self._pos
            self._pos += len(piece)
            if self._kind is None:
                self._line += piece
                ended = piece.endswith("\n")
                if not ended and len(self._line) < _PEEK:
                    continue
                kind = self._classify(self._line, ended)
                if kind is None:
                    continue
                self._kind = kind
                piece, start = self._line, self._line_start
                if kind == "prose":
                    piece = _LIST_NUMBER_RE.sub(r"\1#\2", piece)
            if self._kind != "skip":
                track = self._prose if self._kind == "prose" else self._verbatim
                track.add(piece, start)
                if track not in touched:
                    touched.append(track)
            if piece.endswith("\n"):
                self._kind, self._line, self._line_start = None, "", self._pos
        for track in touched:
            if self._found(track.loop_start()) is not None:
                return self.offset
        return None

    def _found(self, offset: int | None) -> int | None:
        if offset is not None:
            self.offset, self.detected_at = offset, self._pos
        return offset

    def _classify(self, line: str, ended: bool) -> str | None:
        """What a line is, from its first characters; None while it cannot be told yet."""
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            self._in_code = not self._in_code
            return "skip"
        if self._in_code or stripped.startswith("|"):
            return "verbatim"
        if _DIVIDER_RE.fullmatch(line):
            if ended:
                return "skip"
            return "prose" if len(line) > _UNDECIDED_MAX else None
        return "prose"


def find_loop(text: str, chunk: int = 16) -> int | None:
    """Offset where a finished text's degenerate repetition begins (`text[:offset]` keeps one copy), or None."""
    if len(text) <= MIN_RUN:  # a loop is one copy and a periodic run of MIN_RUN characters after it at least
        return None
    detector = LoopDetector()
    for start in range(0, len(text), chunk):
        found = detector.feed(text[start:start + chunk])
        if found is not None:
            return found
    return None


def repeated_tool_calls(calls: Iterable[Mapping[str, Any]], times: int = 3) -> bool:
    """Whether the same tool was called with the same arguments `times` times in a row (`name`/`args` keys)."""
    last, count = None, 0
    for call in calls:
        key = (call.get("name"), json.dumps(call.get("args"), sort_keys=True, ensure_ascii=False, default=str))
        count = count + 1 if key == last else 1
        last = key
        if count >= times:
            return True
    return False
