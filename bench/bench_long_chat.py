"""Long chats on the local model: time to the first token as history grows, with and without the prompt cache.

Several chats take turns on one model (chat 1 turn 1, chat 2 turn 1, ..., chat 1 turn 2, ...), as chats do in
the bot. Each user message is about 200 tokens, so at turn 8 a chat's prompt holds about 2,000 tokens of history.
Both sides run in one process on the same GGUF, through `LocalBackend(...).chat_model()`:
- cache: the default `LOCAL_PROMPT_CACHE_MB=1024` (each conversation's evaluated prefix kept), every turn;
- baseline: `LOCAL_PROMPT_CACHE_MB=0` (llama-cpp-python's own reuse: the prefix of the previous request only),
  replaying the very same prompts (the cache run's histories) of the first and the last turn, chats interleaved
  as before (every turn of the baseline costs the whole history: all turns would take many minutes on 2 cores;
  `--baseline-all` runs them all).
Time to first token is measured by the caller (the first chunk of the answer, text or end); the tokens llama.cpp
evaluated for each prompt come from its own counters. Target: with the cache, turn 8 <= 1.5x turn 1.
Also printed: the size of the saved state per 1,000 tokens, and what `Llama.save_state()` copies instead.

    .venv/bin/python bench/bench_long_chat.py [--gguf PATH] [--chats 3] [--turns 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agents.backends.local import LocalBackend, bundled_gguf

SYSTEM = "You are adaptbot, a helpful assistant. Answer briefly."
TOPICS = ["the river", "a small town", "the old library", "winter markets", "the northern railway", "a lighthouse"]
WORDS = ("people often remember how the morning light fell across the square while traders set out bread, apples, "
         "wool and copper pots, and children ran between the stalls asking questions nobody could answer").split()


def user_message(chat: int, turn: int) -> str:
    """About 200 tokens of varied, deterministic text: a question with some context."""
    rng = random.Random(chat * 1000 + turn)
    topic = TOPICS[(chat + turn) % len(TOPICS)]
    sentences = [" ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + "." for _ in range(10)]
    return f"Here are my notes about {topic}. " + " ".join(sentences) + f" What do you think about {topic}?"


async def run_chats(backend: LocalBackend, chats: int, turns: int, max_tokens: int,
                    replay: dict[tuple[int, int], list[BaseMessage]] | None = None) -> dict[str, Any]:
    """Interleave the chats' turns (or replay the prompts in `replay`, by (turn, chat)); returns per turn the
    first-token times, evaluated and prompt token counts, and every prompt's messages."""
    model = backend.chat_model()
    evals: list[tuple[int, int]] = []
    model.eval_hook = lambda prompt, evaluated: evals.append((prompt, evaluated))
    histories: list[list[BaseMessage]] = [[SystemMessage(SYSTEM)] for _ in range(chats)]
    ttft: list[list[float]] = [[] for _ in range(turns)]
    evaluated: list[list[int]] = [[] for _ in range(turns)]
    prompt_tokens: list[list[int]] = [[] for _ in range(turns)]
    prompts: dict[tuple[int, int], list[BaseMessage]] = {}
    for turn in range(turns):
        if replay is not None and (turn, 0) not in replay:
            continue
        for chat in range(chats):
            if replay is not None:
                messages = replay[(turn, chat)]
            else:
                messages = [*histories[chat], HumanMessage(user_message(chat, turn))]
            prompts[(turn, chat)] = messages
            start, first, pieces = time.perf_counter(), None, []
            async for chunk in model.astream(messages, max_tokens=max_tokens, seed=chat * 100 + turn):
                if first is None:
                    first = time.perf_counter() - start
                pieces.append(str(chunk.content))
            assert first is not None
            ttft[turn].append(first)
            prompt, done = evals[-1]
            evaluated[turn].append(done)
            prompt_tokens[turn].append(prompt)
            histories[chat] = [*messages, AIMessage("".join(pieces))]
    return {"ttft": ttft, "evaluated": evaluated, "prompt": prompt_tokens, "prompts": prompts}


async def state_sizes(backend: LocalBackend) -> tuple[float, float, int]:
    """(MB of sequence state per 1,000 tokens, MB that `Llama.save_state()` copies, tokens in the context)."""

    def job(llm: Any, emit: Any, _cancelled: Any) -> None:
        import llama_cpp

        seq = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
        full = llm.save_state()
        emit((seq / 1e6 / llm.n_tokens * 1000, (full.llama_state_size + full.scores.nbytes) / 1e6, llm.n_tokens))

    (item,) = [item async for batch in backend.worker.run(job) for item in batch]
    return item


def mean(values: list[float]) -> float:
    return statistics.fmean(values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="GGUF to use (default: the bundled Gemma 3 270M)")
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--baseline-all", action="store_true", help="run every turn without the cache too")
    args = parser.parse_args()
    gguf = args.gguf or await asyncio.to_thread(bundled_gguf, Path("data") / "models")
    print(f"model: {gguf}; {args.chats} chats x {args.turns} turns, interleaved; answers up to {args.max_tokens} "
          f"tokens; n_threads={args.threads}, n_ctx={args.n_ctx}")

    results: dict[str, dict[str, Any]] = {}
    sizes: tuple[float, float, int] | None = None
    for name, cache_mb in (("cache", 1024), ("no cache", 0)):
        backend = LocalBackend(gguf, n_ctx=args.n_ctx, n_threads=args.threads, max_tokens=args.max_tokens,
                               prompt_cache_mb=cache_mb)
        replay = None
        if not cache_mb:
            ends = range(args.turns) if args.baseline_all else (0, args.turns - 1)
            replay = {key: value for key, value in results["cache"]["prompts"].items() if key[0] in ends}
        try:
            results[name] = await run_chats(backend, args.chats, args.turns, args.max_tokens, replay)
            if cache_mb:
                sizes = await state_sizes(backend)
                print(f"cache: {len(backend.prompt_cache)} conversations saved, "
                      f"{backend.prompt_cache.size_bytes / 1e6:.0f} MB, {backend.prompt_cache.restores} restores")
        finally:
            await backend.aclose()

    base, cached = results["no cache"], results["cache"]
    print(f"\n{'turn':>4} {'prompt tok':>10} | {'no cache: ttft':>14} {'evaluated':>9} | {'cache: ttft':>11} "
          f"{'evaluated':>9}")
    for turn in range(args.turns):
        if base["ttft"][turn]:
            baseline = f"{mean(base['ttft'][turn]):13.2f}s {mean(base['evaluated'][turn]):9.0f}"
        else:
            baseline = f"{'-':>14} {'-':>9}"
        print(f"{turn + 1:4d} {mean(cached['prompt'][turn]):10.0f} | {baseline} | {mean(cached['ttft'][turn]):10.2f}s "
              f"{mean(cached['evaluated'][turn]):9.0f}")
    last = args.turns - 1
    base_growth = mean(base["ttft"][last]) / mean(base["ttft"][0])
    growth = mean(cached["ttft"][last]) / mean(cached["ttft"][0])
    verdict = "OK" if growth <= 1.5 else "ABOVE TARGET"
    print(f"\ntime to first token, turn {args.turns} / turn 1: cache {growth:.2f}x (target <= 1.5x)  {verdict};  "
          f"no cache {base_growth:.2f}x")
    print(f"turn {args.turns}: cache {mean(cached['ttft'][last]):.2f}s vs no cache {mean(base['ttft'][last]):.2f}s "
          f"({mean(base['ttft'][last]) / mean(cached['ttft'][last]):.1f}x faster)")
    if sizes is not None:
        per_k, full, n = sizes
        print(f"saved sequence state: {per_k:.1f} MB per 1,000 tokens; Llama.save_state() at {n} tokens copies "
              f"{full:.0f} MB (logits buffer included)")


if __name__ == "__main__":
    asyncio.run(main())
