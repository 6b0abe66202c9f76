"""A side-by-side question's wall time vs a one-answer question, against a model that takes 1 s to answer.

The real bot (aiogram over HTTP, inbox, streaming, storage) runs against the fake Telegram server and a scripted
model server that waits 1 s before each answer. One chat answers in one mode, another compares two modes; the
questions alternate between them, one at a time, and each is timed from the user's message to its answer shown
(for a compare: the vote buttons under B). The two answers of a compare run at once, so the target is a compare
question within 1.2x of a one-answer question.

    .venv/bin/python bench/bench_compare.py [--questions 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.service import Mode
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

SINGLE, COMPARE = 1, 2
MODEL_SECONDS = 1.0


async def timed(tg: FakeTelegram, chat: int, text: str) -> float:
    """Seconds from the user's message to its answer shown: the final text (one answer) or the vote buttons under
    B (side by side). Both come after the answers are stored."""
    before = len(tg.messages(chat))
    answer = f"echo: {text}"
    start = time.perf_counter()
    tg.user_says(chat, text)
    if chat == SINGLE:
        await tg.wait_for(lambda: any(m.text == answer for m in tg.messages(chat)[before:]),
                          timeout=60)
    else:
        await tg.wait_for(lambda: len(tg.messages(chat)) >= before + 2 and tg.messages(chat)[before + 1].reply_markup,
                          timeout=60)
    return time.perf_counter() - start


async def main(questions: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    async with FakeTelegram() as tg, ScriptedOpenAI(delay=MODEL_SECONDS) as llm:
        runner = BotRunner(Path(tempfile.mkdtemp()), tg, llm)
        app = await runner.start(default_mode="zero-shot")
        try:
            await app.services.compare.set(COMPARE, (Mode("zero-shot", "cloud"), Mode("prompt", "cloud")))
            await timed(tg, SINGLE, "warm-up")  # first-call costs (imports, connections) out of the figures
            await timed(tg, COMPARE, "warm-up")
            single, compare = [], []
            for i in range(questions):  # alternating, so that drift on a noisy machine hits both alike
                single.append(await timed(tg, SINGLE, f"question {i}"))
                compare.append(await timed(tg, COMPARE, f"question {i}"))
        finally:
            await runner.stop()
    one, two = statistics.median(single), statistics.median(compare)
    print(f"model: {MODEL_SECONDS:.1f} s per answer; {questions} questions each (median)")
    print(f"one answer:   {one:.3f} s  ({', '.join(f'{x:.2f}' for x in single)})")
    print(f"side by side: {two:.3f} s  ({', '.join(f'{x:.2f}' for x in compare)})")
    print(f"model calls at once: {llm.max_in_flight}")
    print(f"ratio compare/single: {two / one:.2f} (target <= 1.2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.questions))
