"""What `adaptbot dataset export` costs on 100 000 stored votes and feedback rows, against a plain dump.

Seeds a database (bulk inserts, for speed: the rows are what record_vote / record_feedback write) with `--votes`
votes on comparisons (two voters each) and `--feedback` 👍/👎 on answers spread over chats of 10 turns, then:

* **baseline**: one plain SELECT of the same rows (votes joined with their comparisons, feedback joined with its
  answer), each row dumped with json.dumps to a file: reading and writing, nothing else;
* **export --keep-flagged**: `export_dataset` as the CLI runs it (pages of short units of work, history walked
  per chat, dedup, JSON) for sft and kto, without the symptom checks;
* **export**: the same with the checks (invented numbers, language, loops: the evaluation's own, about 1 ms an
  answer on this machine), which decide what is left out.

    .venv/bin/python bench/bench_export.py [--votes 50000] [--feedback 50000]
    scripts/with-postgres.sh sh -c '.venv/bin/python bench/bench_export.py --database-url "$PG_TEST_URL"'

Target: the export with the checks under 10 s for 100 000 rows (2 cores); the ratio to the baseline is printed.
This machine's speed moves by 20% from run to run: compare medians of several runs, old code and new interleaved.
What brought it from 13.7 s to about 9 s (medians):
* the reads: two range queries a page over (chat, id) indexes, plain rows, tuples for records, no id lists sent
  back (the page walk was 5 s of the 14, now 1.5 s);
* the checks: each source text read once (a bounded cache of its figures), one scan for all the families of
  number patterns' hints (a date separator, a month name, a phone or time shape) and Russian month names matched
  by their first letter, each distinct word's transliteration round trip once, and no loop search in a text
  too short to hold a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select

from bot.dataset import ExportOptions, export_dataset
from bot.storage import Database
from bot.storage.models import Comparison, Feedback, Message, Vote

CHUNK = 5000


async def seed(db: Database, votes: int, feedback: int) -> None:
    comparisons = votes // 2
    for start in range(0, comparisons, CHUNK):
        rows = [dict(id=i + 1, chat_id=10_000_000 + i % 500, question=f"Question {i}: how many apples are in box {i}?",
                     history=json.dumps([{"role": "user", "content": f"hello {i % 50}"},
                                         {"role": "assistant", "content": "Hello! How can I help?"}]),
                     system_prompt="Answer briefly.", level_a="prompt", model_a="cloud",
                     answer_a=f"Box {i} holds {i} apples.", level_b="zero-shot", model_b="local",
                     answer_b=f"There are some apples in box {i}.")
                for i in range(start, min(start + CHUNK, comparisons))]
        await db.run(lambda s, r=rows: s.execute(insert(Comparison), r))
        vote_rows = [dict(compare_id=r["id"], voter=v, vote="a" if (r["id"] + v) % 3 else "b", season=1)
                     for r in rows for v in (1, 2)]
        await db.run(lambda s, r=vote_rows: s.execute(insert(Vote), r))
    # feedback: chats of 10 turns; every answer rated once
    message_id = 0
    for start in range(0, feedback, CHUNK):
        messages, rated = [], []
        for i in range(start, min(start + CHUNK, feedback)):
            chat = i // 10
            messages.append(dict(id=message_id + 1, chat_id=chat, role="user", complete=True, level="prompt",
                                 model="cloud", content=f"What is {i} plus one?"))
            messages.append(dict(id=message_id + 2, chat_id=chat, role="assistant", complete=True, level="prompt",
                                 model="cloud", content=f"{i} plus one is {i + 1}." if i % 4 else f"It is {i + 1}."))
            rated.append(dict(message_id=message_id + 2, chat_id=chat, user_id=1000 + i % 7, kind="rating",
                              rating="up" if i % 3 else "down", reason=None if i % 3 else "too_long",
                              source="button", level="prompt", model="cloud", system_prompt="Answer briefly."))
            message_id += 2
        await db.run(lambda s, m=messages, f=rated: (s.execute(insert(Message), m), s.execute(insert(Feedback), f)))


async def baseline(db: Database, out: Path) -> int:
    """A plain SELECT of the same rows, json.dumps per row: the floor any export sits on."""

    def dump(s) -> int:  # type: ignore[no-untyped-def]
        n = 0
        with open(out, "w", encoding="utf-8") as f:
            votes = select(Comparison.question, Comparison.history, Comparison.answer_a, Comparison.answer_b,
                           Vote.vote).join(Vote, Vote.compare_id == Comparison.id)
            fb = select(Message.content, Feedback.rating, Feedback.system_prompt).join(
                Message, Message.id == Feedback.message_id)
            for stmt in (votes, fb):
                for row in s.execute(stmt, execution_options={"yield_per": CHUNK}):
                    f.write(json.dumps(list(row), ensure_ascii=False) + "\n")
                    n += 1
        return n

    return await db.run(dump)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=50_000)
    parser.add_argument("--feedback", type=int, default=50_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        db = Database(url)
        await db.create_all()
        t = time.perf_counter()
        await seed(db, args.votes, args.feedback)
        print(f"seeded {args.votes} votes and {args.feedback} feedback rows in {time.perf_counter() - t:.1f} s "
              f"({db.url.get_backend_name()})")
        t, cpu = time.perf_counter(), time.process_time()
        n = await baseline(db, Path(tmp) / "baseline.jsonl")
        base = time.perf_counter() - t
        # CPU seconds too: on a shared machine they move less than wall time
        print(f"baseline (SELECT + json.dumps): {n} rows in {base:.2f} s   cpu {time.process_time() - cpu:.2f} s")
        for kind, keep in (("sft", True), ("kto", True), ("sft", False)):
            t, cpu = time.perf_counter(), time.process_time()
            result = await export_dataset(db, ExportOptions(kind=kind, keep_flagged=keep),  # type: ignore[arg-type]
                                          Path(tmp) / f"{kind}.jsonl", salt=b"bench")
            took, cpu = time.perf_counter() - t, time.process_time() - cpu
            label = f"export {kind}{' --keep-flagged' if keep else ''}"
            print(f"{label:<28} {result.written:>6} examples in {took:6.2f} s   ratio to baseline "
                  f"{took / base:5.1f}x   cpu {cpu:6.2f} s   left out: {dict(result.skipped)}")
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
