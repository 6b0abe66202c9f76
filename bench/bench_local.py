"""Local model throughput and event-loop lag: the bot's `local` backend vs a plain llama.cpp loop.

Same GGUF (a tiny random Llama built on the fly, or --gguf), same rendered prompt, same max_tokens and
sampling, alternating repetitions in one run:
- baseline: `llama_cpp.Llama.create_completion(stream=True)` iterated in a plain loop;
- backend: `LocalBackend(...).chat_model().astream(...)` (worker thread, queue, LangChain chunks),
  while a ticker coroutine measures how late the event loop wakes up.
Targets: tokens/s ratio >= 0.95, worst loop lag <= 50 ms.

    .venv/bin/python bench/bench_local.py [--reps 9] [--max-tokens 512] [--threads 1] [--gguf PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import HumanMessage, SystemMessage

from agents.backends.local import LocalBackend

MESSAGES = [
    SystemMessage("You are a helpful assistant. Answer in detail."),
    HumanMessage("Tell me a long story about a fox who learns to count."),
]
SEED = 1234
TICK = 0.001  # the ticker asks to wake up every millisecond


def baseline_run(llm, prompt_tokens: list[int], sampling: dict, stop: list[str]) -> tuple[str, float]:
    """Plain llama-cpp-python streaming loop; returns (text, seconds)."""
    start = time.perf_counter()
    text = "".join(
        chunk["choices"][0]["text"]
        for chunk in llm.create_completion(prompt_tokens, stream=True, stop=stop, seed=SEED, **sampling)
    )
    return text, time.perf_counter() - start


async def backend_run(model, max_tokens: int) -> tuple[str, int, float, list[float]]:
    """Stream through the backend while measuring loop lag; returns (text, tokens, seconds, lags)."""
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    pieces, tokens = [], 0
    async for chunk in model.astream(MESSAGES, max_tokens=max_tokens, seed=SEED):
        pieces.append(chunk.content)
        if chunk.usage_metadata:
            tokens = chunk.usage_metadata["output_tokens"]
    elapsed = time.perf_counter() - start
    done = True
    await ticking
    return "".join(pieces), tokens, elapsed, lags


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", type=Path, help="GGUF to use (default: build the tiny test model)")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()

    from llama_cpp import Llama

    with tempfile.TemporaryDirectory() as tmp:
        if args.gguf is None:
            from tests.tiny_gguf import build_tiny_gguf

            args.gguf = build_tiny_gguf(Path(tmp) / "tiny.gguf")
        backend = LocalBackend(
            args.gguf, n_ctx=args.n_ctx, n_threads=args.threads, max_tokens=args.max_tokens
        )
        model = backend.chat_model()
        sampling = {
            "max_tokens": args.max_tokens,
            "temperature": model.temperature,
            "top_p": model.top_p,
            "top_k": model.top_k,
            "min_p": model.min_p,
            "repeat_penalty": model.repeat_penalty,
        }
        await model.ainvoke(MESSAGES, max_tokens=4)  # load the model, render the prompt
        prompt = model.last_prompt
        assert prompt is not None
        llm = Llama(str(args.gguf), n_ctx=args.n_ctx, n_threads=args.threads, verbose=False)
        prompt_tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        stop = ["<|im_end|>"]  # what the backend passes for a ChatML template
        baseline_run(llm, prompt_tokens, {**sampling, "max_tokens": 4}, stop)  # warm up

        base_rates, local_rates, all_lags = [], [], []
        for rep in range(args.reps):
            # Alternate which side goes first so drift in machine load hits both alike.
            order = ("base", "local") if rep % 2 == 0 else ("local", "base")
            for side in order:
                if side == "base":
                    base_text, base_seconds = baseline_run(llm, prompt_tokens, sampling, stop)
                else:
                    local_text, tokens, local_seconds, lags = await backend_run(model, args.max_tokens)
                    all_lags.extend(lags)
            # Same prompt, seed and sampling: the very same tokens, so tokens/s compare like for like.
            assert local_text == base_text, "the backend and the baseline generated different text"
            base_rates.append(tokens / base_seconds)
            local_rates.append(tokens / local_seconds)
            print(
                f"rep {rep + 1}: {tokens} tokens   baseline {base_rates[-1]:8.1f} tok/s   "
                f"local backend {local_rates[-1]:8.1f} tok/s   worst lag {max(lags) * 1000:5.1f} ms"
            )
        llm.close()
        await backend.aclose()

    base, local = statistics.median(base_rates), statistics.median(local_rates)
    # Each repetition pairs two runs close in time; the median of the pair ratios resists load drift.
    ratio = statistics.median(lr / br for lr, br in zip(local_rates, base_rates, strict=True))
    worst = max(all_lags) * 1000
    p99 = statistics.quantiles(all_lags, n=100)[98] * 1000
    print(
        f"\nmodel: {args.gguf.name if args.gguf else 'tiny'}  max_tokens={args.max_tokens}  threads={args.threads}"
    )
    print(f"baseline create_completion(stream=True): {base:8.1f} tok/s (median of {args.reps})")
    print(f"LocalBackend chat model astream:          {local:8.1f} tok/s (median of {args.reps})")
    print(
        f"ratio local/baseline (median of per-repetition ratios): {ratio:.3f}  (target >= 0.95)  {'OK' if ratio >= 0.95 else 'BELOW TARGET'}"
    )
    print(
        f"event-loop lag while generating: worst {worst:.1f} ms, p99 {p99:.1f} ms over {len(all_lags)} ticks"
        f"  (target worst <= 50 ms)  {'OK' if worst <= 50 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
