"""Full garbage collections in the bot's process: what `gc.freeze()` after start-up saves (`adaptbot run` does it
once its warm-up is done, bot/app.py).

Each variant runs in a fresh interpreter that imports what a polling bot holds after its warm-up (the app, aiogram's
types, langchain-openai and the OpenAI SDK), then parses a stream of updates into aiogram `Update` objects as the pump
does, keeping the last 1024 (the pump's cache of parsed updates). Printed: the objects the collector walks and the
median duration of a full collection, without the freeze (baseline) and with it, and the ratio. The collector runs a
full collection on its own whenever the objects that survived since the last one reach a quarter of those it walks:
under bench/bench_bot.py's load that happened about once every 250 messages, each one a pause of the event loop.

    PYTHONPATH=. .venv/bin/python bench/bench_gc.py [--updates 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys, time
from collections import deque
import bot.app, bot.cli, langchain_openai, openai  # what `adaptbot run` holds after its warm-up
from aiogram.types import Update

if sys.argv[1] == "1":
    gc.freeze()
window = deque(maxlen=1024)
for i in range(int(sys.argv[2])):
    raw = {"update_id": i, "message": {"message_id": i, "date": 0, "text": f"question {i}",
           "chat": {"id": i % 50, "type": "private"}, "from": {"id": i % 50, "is_bot": False, "first_name": "U"}}}
    window.append(Update.model_validate(raw))
full = []
for _ in range(5):
    t = time.perf_counter()
    gc.collect()
    full.append(time.perf_counter() - t)
print(json.dumps({"tracked": len(gc.get_objects()), "full_ms": sorted(full)[2] * 1000}))
"""


def run(freeze: bool, updates: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, "1" if freeze else "0", str(updates)], cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeats):  # interleaved: the machine's speed drifts
        for freeze in (False, True):
            runs[freeze].append(run(freeze, args.updates))
    med = {f: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for f, rs in runs.items()}
    base, frozen = med[False], med[True]
    print(f"{args.updates} updates parsed, the last 1024 kept; medians of {args.repeats} interleaved runs\n")
    print(f"{'':40}{'no freeze':>12}{'frozen':>12}{'ratio':>8}")
    rows = [("objects the collector walks", "tracked"), ("a full collection, ms", "full_ms")]
    for label, key in rows:
        print(f"{label:40}{base[key]:12.1f}{frozen[key]:12.1f}{frozen[key] / base[key]:8.3f}")


if __name__ == "__main__":
    main()
