"""Local model throughput and event-loop lag: the bot's `local` backend vs a plain llama.cpp loop.

Same GGUF (a random Llama built on the fly, or --gguf), same rendered prompt, same max_tokens and
sampling, in one run (every side generates the very same text, checked). Each repetition runs baseline
and backend twice in ABBA (then BAAB) order, so drift in the load of a shared machine hits both alike;
the figure is the median of the per-repetition ratios.
The default model (n_embd 512, 4 layers, 52 MB of f32 weights) takes 3-4 ms a token on one core here, so
per-token compute dominates as it does in real use (a 0.5B quantized instruct model takes several times
longer); the test model (--n-embd 64 --n-layer 2 --n-ff 128) runs at over 1,000 tokens/s and magnifies
every microsecond of per-token Python overhead, on both sides:
- baseline: a plain `llama_cpp.Llama.create_completion(stream=True)` loop on the backend's own `Llama`,
  on its worker thread, timed around the loop alone;
- backend: `LocalBackend(...).chat_model().astream(...)` timed by the caller (worker thread, queue,
  hand-over to the event loop, LangChain chunks);
- once per repetition, the same plain loop on a second `Llama` in the main thread: two identical
  instances differ by several percent here, so this line shows how much of a difference is noise;
- loop lag: a coroutine measures how late the event loop wakes up from 1 ms sleeps while the backend
  generates (a separate run: a thousand wake-ups a second cost CPU of their own); for comparison, while
  the plain loop generates on the worker thread (what any threaded design pays: the GIL, the machine),
  and for as long again with nothing running (the machine's own noise floor).
Targets: tokens/s ratio >= 0.95, worst loop lag while generating <= 50 ms.

    .venv/bin/python bench/bench_local.py [--reps 6] [--max-tokens 256] [--threads 1] [--gguf PATH]
                                          [--n-embd 512] [--n-layer 4] [--n-ff 1536]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import HumanMessage, SystemMessage

from agents.backends.llama_chat import messages_to_turns, render_prompt
from agents.backends.local import LocalBackend, load_llama

MESSAGES = [
    SystemMessage("You are a helpful assistant. Answer in detail."),
    HumanMessage("Tell me a long story about a fox who learns to count."),
]
SEED = 1234
TICK = 0.001  # the ticker asks to wake up every millisecond


def plain_loop(llm: Any, prompt_tokens: list[int], sampling: dict) -> tuple[str, float, float]:
    """The baseline: llama-cpp-python's streaming loop, nothing else; returns (text, seconds, cpu seconds).

    `sampling` carries the stop strings the backend passes for this model's template.
    """
    start, cpu = time.perf_counter(), time.thread_time()
    text = "".join(
        chunk["choices"][0]["text"]
        for chunk in llm.create_completion(prompt_tokens, stream=True, seed=SEED, **sampling)
    )
    return text, time.perf_counter() - start, time.thread_time() - cpu


async def same_instance_baseline(backend: LocalBackend, prompt: str, sampling: dict) -> tuple[str, float, float]:
    """The plain loop on the backend's own `Llama`, on its own thread (timed there, no hand-over)."""

    def job(llm: Any, emit: Any, _cancelled: Any) -> None:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        emit(plain_loop(llm, tokens, sampling))

    results = [item async for batch in backend.worker.run(job) for item in batch]
    return results[0]


class Ticker:
    """Measures how late the event loop wakes up from a 1 ms sleep."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def _run(self) -> None:
        while not self._stop:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append(time.perf_counter() - before - TICK)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop = True
        assert self._task is not None
        await self._task


async def template_stops(backend: LocalBackend) -> list[str]:
    """The stop strings the backend renders for this model's chat template (ChatML's, Gemma's, ...)."""

    def job(llm: Any, emit: Any, _cancelled: Any) -> None:
        emit(render_prompt(llm, messages_to_turns(MESSAGES))[1])

    (item,) = [item async for batch in backend.worker.run(job) for item in batch]
    return item


async def backend_run(model: Any, max_tokens: int) -> tuple[str, int, float, float]:
    """Stream through the backend's chat model; returns (text, tokens, seconds, cpu seconds of all threads)."""
    pieces, tokens = [], 0
    start, cpu = time.perf_counter(), time.process_time()
    async for chunk in model.astream(MESSAGES, max_tokens=max_tokens, seed=SEED):
        pieces.append(chunk.content)
        if chunk.usage_metadata:
            tokens = chunk.usage_metadata["output_tokens"]
    return "".join(pieces), tokens, time.perf_counter() - start, time.process_time() - cpu


async def backend_lags(model: Any, max_tokens: int) -> tuple[list[float], float]:
    """Loop lags while the backend streams an answer, and how long that took."""
    start = time.perf_counter()
    async with Ticker() as ticker:
        async for _chunk in model.astream(MESSAGES, max_tokens=max_tokens, seed=SEED):
            pass
    return ticker.lags, time.perf_counter() - start


async def plain_lags(backend: LocalBackend, prompt: str, sampling: dict) -> list[float]:
    """Loop lags while the plain loop generates on the worker thread (nothing handed over until the end)."""
    async with Ticker() as ticker:
        await same_instance_baseline(backend, prompt, sampling)
    return ticker.lags


async def idle_lags(seconds: float) -> list[float]:
    async with Ticker() as ticker:
        await asyncio.sleep(seconds)
    return ticker.lags


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(name: str, rates: list[float]) -> str:
    return f"{name:44s} median {statistics.median(rates):7.1f} tok/s, best {max(rates):7.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="GGUF to use (default: build a random Llama, shaped below)")
    parser.add_argument("--n-embd", type=int, default=512)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-ff", type=int, default=1536)
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.gguf is None:
            from tests.tiny_gguf import build_tiny_gguf

            heads = max(args.n_embd // 64, 1)
            args.gguf = build_tiny_gguf(Path(tmp) / "random-llama.gguf", n_embd=args.n_embd, n_layer=args.n_layer,
                                        n_head=heads, n_head_kv=max(heads // 2, 1), n_ff=args.n_ff)
            shape = f"random Llama n_embd={args.n_embd} n_layer={args.n_layer} n_ff={args.n_ff} vocab 512 f32"
        else:
            shape = str(args.gguf)
        size = args.gguf.stat().st_size / 1e6
        print(f"model: {shape} ({size:.0f} MB); max_tokens={args.max_tokens}, n_threads={args.threads}, "
              f"n_ctx={args.n_ctx}, {args.reps} reps")
        backend = LocalBackend(args.gguf, n_ctx=args.n_ctx, n_threads=args.threads, max_tokens=args.max_tokens)
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
        sampling["stop"] = await template_stops(backend)
        other = load_llama(args.gguf, n_ctx=args.n_ctx, n_threads=args.threads)  # the backend's own loader
        other_tokens = other.tokenize(prompt.encode(), add_bos=False, special=True)
        plain_loop(other, other_tokens, {**sampling, "max_tokens": 4})  # warm up

        base_rates, local_rates, other_rates = [], [], []  # every run's tokens/s
        pair_ratios: list[float] = []  # per repetition: backend tokens/s over baseline tokens/s
        base_cpu, local_cpu = [], []  # CPU seconds per run
        busy_lags: list[float] = []
        thread_lags: list[float] = []
        quiet_lags: list[float] = []
        tokens = 0
        for rep in range(args.reps):
            # ABBA / BAAB: a linear drift in machine load hits both sides alike within a repetition.
            order = ("base", "local", "local", "base") if rep % 2 == 0 else ("local", "base", "base", "local")
            seconds = {"base": 0.0, "local": 0.0}
            texts = set()
            for side in order:
                if side == "base":
                    text, took, cpu = await same_instance_baseline(backend, prompt, sampling)
                    base_cpu.append(cpu)
                else:
                    text, tokens, took, cpu = await backend_run(model, args.max_tokens)
                    local_cpu.append(cpu)
                seconds[side] += took
                (base_rates if side == "base" else local_rates).append(tokens / took)
                texts.add(text)
            other_text, other_s, _ = plain_loop(other, other_tokens, sampling)
            other_rates.append(tokens / other_s)
            # Same prompt, seed and sampling: the very same tokens, so tokens/s compare like for like.
            assert texts == {other_text}, "the runs generated different text"
            pair_ratios.append(seconds["base"] / seconds["local"])
            lags, lag_s = await backend_lags(model, args.max_tokens)
            busy_lags.extend(lags)
            thread_lags.extend(await plain_lags(backend, prompt, sampling))
            quiet_lags.extend(await idle_lags(lag_s))
            print(
                f"rep {rep + 1:2d}: {tokens} tokens  baseline {2 * tokens / seconds['base']:7.1f} tok/s  "
                f"backend {2 * tokens / seconds['local']:7.1f} tok/s  ratio {pair_ratios[-1]:.3f}  "
                f"worst lag {ms(max(lags))}"
            )
        other.close()
        await backend.aclose()

    ratio = statistics.median(pair_ratios)
    best = max(local_rates) / max(base_rates)
    other_best = max(other_rates) / max(base_rates)
    worst, p99 = max(busy_lags), statistics.quantiles(busy_lags, n=100)[98]
    quiet_worst, quiet_p99 = max(quiet_lags), statistics.quantiles(quiet_lags, n=100)[98]
    thread_worst, thread_p99 = max(thread_lags), statistics.quantiles(thread_lags, n=100)[98]
    print(f"\nmodel {shape}, max_tokens={args.max_tokens}, n_threads={args.threads}, {args.reps} reps")
    print(summary("baseline: create_completion(stream=True) loop", base_rates))
    print(summary("LocalBackend chat model astream", local_rates))
    print(summary("same loop on a second Llama, main thread", other_rates))
    verdict = "OK" if ratio >= 0.95 else "BELOW TARGET"
    print(f"ratio backend/baseline: median per-rep {ratio:.3f} (target >= 0.95)  {verdict};  best-of-N {best:.3f}")
    cpu_ratio = statistics.median(base_cpu) / statistics.median(local_cpu)
    print(
        f"CPU time per token (median): baseline {statistics.median(base_cpu) / tokens * 1e6:.0f} us, backend "
        f"{statistics.median(local_cpu) / tokens * 1e6:.0f} us (all threads): CPU-time ratio {cpu_ratio:.3f}"
    )
    print(f"  (noise: a second Llama's best over the baseline's best: {other_best:.3f})")
    verdict = "OK" if worst <= 0.05 else "ABOVE TARGET"
    print(f"event-loop lag while generating: worst {ms(worst)}, p99 {ms(p99)} (target worst <= 50 ms)  {verdict}")
    print(f"  plain loop generating on the worker thread:     worst {ms(thread_worst)}, p99 {ms(thread_p99)}")
    print(f"  nothing running, as long (machine noise):       worst {ms(quiet_worst)}, p99 {ms(quiet_p99)}")


if __name__ == "__main__":
    asyncio.run(main())
