"""The model's side of the fault mix, shared by tests/test_reliability_faults.py and bench/bench_inbox.py.

Each message is labelled by chat and position; a seeded plan gives some labels a kind of model fault. The scripted
model answers "echo: <label>" unless the plan says otherwise for that label.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from tests.fakes.openai_server import Fault, Reply, Stall, Text

# kind of model fault -> share of messages (10% in all)
MODEL_FAULTS = {"500-once": 0.03, "500-always": 0.01, "break-before-text": 0.02, "break-half-way": 0.02,
                "stall": 0.02}
# kinds whose outcome is the full answer (the client or ChatService retries); the others end with a notice
ANSWERED = {"ok", "500-once", "break-before-text"}


def label(chat: int, i: int) -> str:
    return f"{'g' if chat < 0 else 'c'}{abs(chat)} m{i}"


def plan_model_faults(chats: Sequence[int], per_chat: int, seed: int) -> dict[str, str]:
    """label -> kind ("ok" or a key of MODEL_FAULTS), drawn with MODEL_FAULTS' shares."""
    rng = random.Random(seed)
    kinds: dict[str, str] = {}
    for chat in chats:
        for i in range(per_chat):
            roll, kind = rng.random(), "ok"
            for name, share in MODEL_FAULTS.items():
                if roll < share:
                    kind = name
                    break
                roll -= share
            kinds[label(chat, i)] = kind
    return kinds


def flaky_model(kinds: dict[str, str]) -> Callable[[dict[str, Any]], Reply]:
    """A ScriptedOpenAI default that plays each labelled message's fault; unplanned messages are echoed."""
    attempts: Counter[str] = Counter()

    def answer(body: dict[str, Any]) -> Reply:
        asked = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        attempts[asked] += 1
        first = attempts[asked] == 1
        kind, text = kinds.get(asked, "ok"), f"echo: {asked}"
        if (kind == "500-once" and first) or kind == "500-always":
            return Fault(status=500)
        if kind == "break-before-text" and first:
            return Text(text, break_after=0)
        if kind == "break-half-way":
            return Text(text, chunk_size=3, break_after=6)
        if kind == "stall":
            return Stall(seconds=30)
        return Text(text, chunk_size=4)

    return answer
