"""Stage 1, data: read and validate a chat JSONL file, tokenize with the model's chat template, split.

One conversation per line: {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}.
Every problem of every line is collected first and reported in one error, so nothing starts on bad data.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import UsageError

ROLES = ("system", "user", "assistant")
IGNORE = -100  # label of tokens the loss skips (prompt, padding): PyTorch's cross-entropy default


@dataclass(frozen=True)
class Conversation:
    line: int  # 1-based line in the source file, kept so later errors can point at it
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Example:
    """A tokenized conversation: labels are the ids on assistant tokens (incl. end of turn), IGNORE elsewhere."""

    line: int
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_conversations(path: Path) -> tuple[list[Conversation], list[tuple[int, str]]]:
    """Parse and check the structure of every line: (good conversations, [(line, problem), ...])."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"data file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read data file {path}: {exc.strerror}") from None
    conversations: list[Conversation] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not conversations
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((number, "not UTF-8 text"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        problem = _structure_problem(obj)
        if problem:
            problems.append((number, problem))
        else:
            messages = [{"role": m["role"], "content": m["content"]} for m in obj["messages"]]
            conversations.append(Conversation(number, messages))
    return conversations, problems


def _structure_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict) or "messages" not in obj:
        return 'expected an object {"messages": [...]}'
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        return '"messages" must be a non-empty list'
    found = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            found.append(f"message {i} is not an object")
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            found.append(f"message {i} has unknown role {role!r} (expected {', '.join(ROLES)})")
        if not isinstance(content, str):
            found.append(f"message {i} has no text content")
        elif not content.strip():
            found.append(f"message {i} has empty content")
    if not found and not any(m["role"] == "assistant" for m in messages):
        found.append("no assistant message: nothing to learn from")
    return "; ".join(found) or None


def render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """The chat template's text for `messages` (special tokens as text; tokenized with add_special_tokens=False)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def encode(tokenizer: Any, messages: list[dict[str, str]], line: int = 0) -> Example:
    """Tokenize one conversation; label the assistant turns, from the end of the generation prompt to the end
    of the turn, so the end-of-turn token is learned and the model stops.

    Each assistant turn is located by rendering the conversation up to it with the generation prompt (where the
    reply starts) and up to its end (where the next turn starts); this works with any template whose renders of
    a conversation's prefixes are prefixes of the whole render, which is what chat inference relies on too.
    """
    full = render(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        end = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (full.startswith(start) and full.startswith(end) and len(start) < len(end)):
            raise TemplateMismatch(f"the chat template does not render message {i + 1} as a prefix")
        spans.append((len(start), len(end)))
    if tokenizer.is_fast:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        starts = [a for a, _ in enc["offset_mapping"]]
        labels = [tok if any(a <= s < b for a, b in spans) else IGNORE for tok, s in zip(ids, starts, strict=True)]
    else:  # no offsets: count the tokens of each prefix instead
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [IGNORE] * len(ids)
        for a, b in spans:
            lo = len(tokenizer(full[:a], add_special_tokens=False)["input_ids"])
            hi = len(tokenizer(full[:b], add_special_tokens=False)["input_ids"])
            labels[lo:hi] = ids[lo:hi]
    return Example(line, ids, labels)


class TemplateMismatch(ValueError):
    pass


def tokenize_all(
    tokenizer: Any, conversations: list[Conversation], max_length: int
) -> tuple[list[Example], list[tuple[int, str]]]:
    """Encode every conversation: (examples, [(line, problem), ...]) for those too long or unrenderable."""
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("the base model's tokenizer has no chat template; use an instruct/chat model")
    examples, problems = [], []
    for conv in conversations:
        try:
            example = encode(tokenizer, conv.messages, conv.line)
        except TemplateMismatch as exc:
            problems.append((conv.line, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - the template raised (e.g. "roles must alternate"): a problem of this line
            problems.append((conv.line, f"the chat template refused it: {exc}"))
            continue
        if len(example.input_ids) > max_length:
            problems.append((conv.line, f"{len(example.input_ids)} tokens, longer than max_length {max_length}"))
        elif example.trained_tokens == 0:
            problems.append((conv.line, "no assistant tokens left to learn from"))
        else:
            examples.append(example)
    return examples, problems


def split(items: list[Any], val_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Seeded shuffle, then (train, val); at least one of each when there are 2+ items and val_fraction > 0."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = round(len(items) * val_fraction)
    if val_fraction > 0 and len(items) >= 2:
        n_val = min(max(n_val, 1), len(items) - 1)
    val_idx = set(order[:n_val])
    train = [x for i, x in enumerate(items) if i not in val_idx]
    val = [x for i, x in enumerate(items) if i in val_idx]
    return train, val


def end_of_turn_token(tokenizer: Any) -> int | None:
    """The special token the template puts right after an assistant reply (e.g. <|im_end|>), if there is one."""
    probe = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    try:
        example = encode(tokenizer, probe)
        full = render(tokenizer, probe, add_generation_prompt=False)
        after = full.rindex("pong") + len("pong")
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # noqa: BLE001 - a template that cannot render the probe: no end-of-turn token to report
        return None
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    for tok, (start, _), label in zip(enc["input_ids"], enc["offset_mapping"], example.labels, strict=True):
        if start >= after and label != IGNORE:
            return tok if tok in special else None
    return None


def write_jsonl(path: Path, conversations: list[Conversation]) -> None:
    """Write conversations with their source line numbers (kept for later error messages)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"line": c.line, "messages": c.messages}, ensure_ascii=False) + "\n" for c in conversations
        )


def read_split(path: Path) -> list[Conversation]:
    """Read a split written by `write_jsonl`."""
    out = []
    with open(path, encoding="utf-8") as f:
        for text in f:
            if text.strip():
                obj = json.loads(text)
                out.append(Conversation(obj["line"], obj["messages"]))
    return out
