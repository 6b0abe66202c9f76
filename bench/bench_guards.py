"""The streaming loop guard: its cost per token against a local model's decode time, and its accuracy.

    PYTHONPATH=. .venv/bin/python bench/bench_guards.py [--skip-model]

1. Cost: a 4,000-token answer (clean answers joined, cut into tokens by the test GGUF's own tokenizer) fed to
   `LoopDetector` token by token, against the time llama.cpp takes to decode one token of the test GGUF
   (tests/tiny_gguf.py, its default shape: the fastest model we have, so the worst case for the ratio), both on
   one thread. Target: under 2%.
2. Thresholds: tuned on the even-numbered half of tests/data (clean answers and synthetic loops, streamed in
   4-character deltas). A setting qualifies when it cuts no clean answer, misses no loop, cuts every loop within
   270 characters (300 is the target; the margin is for texts we did not write), and still cuts no clean answer
   one grid step lower in MIN_RUN (a margin against refrains we did not write). Among those: the longest
   MAX_RUN (a chorus sung twice in a row stays uncut up to that length), then the soonest median cut. The
   module's defaults must be that choice.
3. Held out: false cuts on the odd-numbered clean answers, detection distance (characters fed after the loop
   started) on the odd-numbered loops.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from agents.checks import repetition
from agents.checks.repetition import LoopDetector

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
GRID = {"min_run": [40, 60, 80, 100, 120], "max_run": [150, 200, 250, 280], "copies": [2, 3, 4]}
TUNE_MAX_DISTANCE = 270
DELTA = 4


def load(name: str) -> tuple[list[dict], list[dict]]:
    """(tuning half, held-out half) of a data file."""
    records = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r["n"] % 2 == 0], [r for r in records if r["n"] % 2 == 1]


def stream(text: str, **thresholds: int) -> LoopDetector:
    """Feed `text` in DELTA-character pieces until a loop is found."""
    detector = LoopDetector(**thresholds)
    for start in range(0, len(text), DELTA):
        if detector.feed(text[start:start + DELTA]) is not None:
            break
    return detector


def evaluate(clean: list[dict], loops: list[dict], **thresholds: int) -> dict[str, object]:
    """False cuts on `clean`; misses and detection distances on `loops`."""
    false_cuts = [r["n"] for r in clean if stream(r["text"], **thresholds).offset is not None]
    distances, misses = [], []
    for record in loops:
        detector = stream(record["text"], **thresholds)
        if detector.detected_at is None:
            misses.append(record["n"])
        else:
            distances.append(detector.detected_at - record["loop_start"])
    return {"false_cuts": false_cuts, "misses": misses, "distances": distances}


def describe(result: dict[str, object], clean: int, loops: int) -> str:
    distances = sorted(result["distances"])  # type: ignore[arg-type]
    p90 = distances[int(0.9 * (len(distances) - 1))] if distances else None
    return (f"false cuts {len(result['false_cuts'])}/{clean} ({len(result['false_cuts']) / clean:.1%}), "  # type: ignore[arg-type]
            f"missed {len(result['misses'])}/{loops}; distance median {statistics.median(distances):.0f}, "  # type: ignore[arg-type]
            f"p90 {p90}, max {max(distances)} characters after the loop started")


def tune(clean: list[dict], loops: list[dict]) -> dict[str, int]:
    """The thresholds chosen on the tuning half (the rule is in the module docstring)."""
    results = {}
    for min_run, max_run, copies in itertools.product(GRID["min_run"], GRID["max_run"], GRID["copies"]):
        result = evaluate(clean, loops, min_run=min_run, max_run=max_run, copies=copies)
        results[min_run, max_run, copies] = result
        print(f"  min_run {min_run:>3} max_run {max_run:>3} copies {copies}: false cuts {len(result['false_cuts']):>2},"
              f" missed {len(result['misses']):>2}, distance median {statistics.median(result['distances']):>5.0f}"
              f" max {max(result['distances'], default=0):>4}")

    def meets(key: tuple[int, int, int]) -> bool:
        result = results[key]
        return not result["false_cuts"] and not result["misses"] and max(result["distances"]) <= TUNE_MAX_DISTANCE

    def margin(key: tuple[int, int, int]) -> bool:
        # One grid step of MIN_RUN to spare: the next lower value has no false cut either.
        min_run, max_run, copies = key
        lower = [m for m in GRID["min_run"] if m < min_run]
        return bool(lower) and not results[max(lower), max_run, copies]["false_cuts"]

    candidates = [key for key in results if meets(key) and margin(key)]
    if not candidates:
        raise SystemExit("no setting passes on the tuning half")
    longest = max(key[1] for key in candidates)
    best = min((key for key in candidates if key[1] == longest),
               key=lambda key: (statistics.median(results[key]["distances"]), -key[0], -key[2]))
    return {"min_run": best[0], "max_run": best[1], "copies": best[2]}


def answer_tokens(llm, count: int) -> list[str]:
    """A `count`-token answer as the model's own token pieces (clean answers joined, repeated if short)."""
    records = [json.loads(line) for line in (DATA / "answers_clean.jsonl").read_text(encoding="utf-8").splitlines()]
    random.Random(0).shuffle(records)  # Russian and English, prose, code and tables mixed
    text = "\n\n".join(r["text"] for r in records)
    ids = llm.tokenize(text.encode(), add_bos=False)[:count]
    pieces, pending = [], b""
    for token in ids:
        pending += llm.detokenize([token])
        try:
            pieces.append(pending.decode())
            pending = b""
        except UnicodeDecodeError:
            continue  # a character split over tokens arrives with its last byte, as a stream does
    return pieces


def detector_seconds_per_token(pieces: list[str], tokens: int, reps: int = 7) -> float:
    """Median over `reps` runs of the detector's time over the whole answer, divided by its `tokens`."""
    runs = []
    for _ in range(reps):
        detector = LoopDetector()
        start = time.perf_counter()
        for piece in pieces:
            detector.feed(piece)
        runs.append((time.perf_counter() - start) / tokens)
        assert detector.offset is None, "the clean answer was cut"
    return statistics.median(runs)


def decode_seconds_per_token(llm, tokens: int = 256, reps: int = 5) -> float:
    """Median over `reps` runs of llama.cpp's time per generated token (first token excluded: prompt eval)."""
    eos = llm.token_eos()
    runs = []
    for rep in range(reps):
        start = None
        count = 0
        for _ in llm.create_completion("The answer is", max_tokens=tokens, temperature=0.8, seed=rep, stream=True,
                                       logit_bias={eos: -100.0}):
            count += 1
            if start is None:
                start = time.perf_counter()
        assert start is not None and count > 1
        runs.append((time.perf_counter() - start) / (count - 1))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-model", action="store_true", help="skip the cost comparison (no llama.cpp)")
    args = parser.parse_args()

    if not args.skip_model:
        from llama_cpp import Llama

        from tests.tiny_gguf import build_tiny_gguf

        with tempfile.TemporaryDirectory() as tmp:
            gguf = build_tiny_gguf(Path(tmp) / "tiny.gguf")
            llm = Llama(str(gguf), n_ctx=512, n_threads=1, verbose=False)
            try:
                pieces = answer_tokens(llm, 4000)
                decode = decode_seconds_per_token(llm)
                guard = detector_seconds_per_token(pieces, 4000)
                decode_again = decode_seconds_per_token(llm)  # the machine is shared: measure the baseline twice
            finally:
                llm.close()
        decode = min(decode, decode_again)
        chars = sum(map(len, pieces))
        print(f"cost: a 4000-token answer ({len(pieces)} deltas, a character split over tokens arriving whole; {chars}"
              f" characters) through LoopDetector: "
              f"{guard * 1e6:.1f} us/token; test GGUF decode (tests/tiny_gguf.py default shape, 1 thread): "
              f"{decode * 1e6:.0f} us/token; ratio {guard / decode:.2%} (target < 2%: "
              f"{'met' if guard / decode < 0.02 else 'MISSED'})\n")

    clean_tune, clean_held = load("answers_clean.jsonl")
    loops_tune, loops_held = load("loops_synthetic.jsonl")
    print(f"tuning on {len(clean_tune)} clean answers and {len(loops_tune)} loops (even n):")
    chosen = tune(clean_tune, loops_tune)
    defaults = {"min_run": repetition.MIN_RUN, "max_run": repetition.MAX_RUN, "copies": repetition.COPIES}
    print(f"\nchosen: {chosen}; module defaults: {defaults} ({'the same' if chosen == defaults else 'DIFFERENT'})")
    print(f"tuning half:   {describe(evaluate(clean_tune, loops_tune, **defaults), len(clean_tune), len(loops_tune))}")
    held = evaluate(clean_held, loops_held, **defaults)
    print(f"held-out half: {describe(held, len(clean_held), len(loops_held))}")
    by_kind: dict[str, list[int]] = {}
    for record in loops_held:
        detector = stream(record["text"], **defaults)
        if detector.detected_at is not None:
            by_kind.setdefault(record["kind"], []).append(detector.detected_at - record["loop_start"])
    print("held-out distance by loop kind: " + ", ".join(
        f"{kind} median {statistics.median(d):.0f} max {max(d)}" for kind, d in sorted(by_kind.items())))
    if held["false_cuts"]:
        print(f"held-out false cuts: n = {held['false_cuts']}")


if __name__ == "__main__":
    main()
