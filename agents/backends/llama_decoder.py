"""Decoding a step as it streams: the final answer's text is yielded token by token while the JSON of the step
is still incomplete."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from agents.backends.llama_grammar import ToolSpec
from agents.errors import ModelCallError

_FINAL_START = re.compile(r'\{\s*"final_answer"\s*:\s*"')
_KEY_START = re.compile(r'\{\s*"(\w)')


def _decode_partial_string(body: str) -> tuple[str, bool]:
    """Decode the body of a JSON string that may still be growing; returns (text so far, closed)."""
    i, closed, last_escape = 0, False, -1
    while i < len(body):
        if body[i] == "\\":
            last_escape = i
            i += 2
            continue
        if body[i] == '"':
            body, closed = body[:i], True
            break
        i += 1
    if not closed and last_escape >= 0:
        incomplete = i > len(body) or (body[last_escape + 1] == "u" and len(body) - last_escape < 6)
        if incomplete:  # wait for the rest of the escape sequence
            body = body[:last_escape]
    try:
        text = json.loads(f'"{body}"', strict=False)
    except json.JSONDecodeError:
        return "", closed
    if not closed and text and "\ud800" <= text[-1] <= "\udbff":
        text = text[:-1]  # half of a surrogate pair: wait for the other half
    return text, closed


class StepDecoder:
    """Follows a grammar-constrained step as it streams: final-answer text comes out as it is generated."""

    def __init__(self) -> None:
        self.raw = ""
        self.is_final: bool | None = None
        self._answer_at = 0
        self._sent = 0

    def feed(self, piece: str) -> str:
        """Add generated text; returns new final-answer text (empty for a tool call)."""
        self.raw += piece
        if self.is_final is None:
            if match := _FINAL_START.match(self.raw):
                self.is_final, self._answer_at = True, match.end()
            elif (key := _KEY_START.match(self.raw)) and key.group(1) != "f":
                self.is_final = False
        if not self.is_final:
            return ""
        text, _ = _decode_partial_string(self.raw[self._answer_at :])
        delta, self._sent = text[self._sent :], max(self._sent, len(text))
        return delta

    def result(self, tools: Sequence[ToolSpec]) -> tuple[str, dict[str, Any] | None]:
        """(rest of the final answer not yet streamed, tool call or None) once generation has ended."""
        try:
            step = json.loads(self.raw, strict=False)
        except json.JSONDecodeError:
            if self.is_final:  # cut off at max_tokens: keep the answer so far, like any truncated reply
                text, _ = _decode_partial_string(self.raw[self._answer_at :])
                return text[self._sent :], None
            raise ModelCallError(
                "the local model's tool call was cut off (max tokens reached); raise LOCAL_MAX_TOKENS"
            ) from None
        if isinstance(step, dict) and "final_answer" in step:
            return str(step["final_answer"])[self._sent :], None
        names = {tool.name for tool in tools}
        if not isinstance(step, dict) or step.get("tool") not in names or not isinstance(step.get("arguments"), dict):
            raise ModelCallError(f"the local model produced an invalid step: {self.raw[:200]!r}")
        return "", {"name": step["tool"], "args": step["arguments"]}
