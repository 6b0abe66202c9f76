"""The bot as a real process vs a streaming relay bot: CPU per message and per chunk, latency, 50 chats at once
against a 1-second model, start-up to the first getUpdates (with the top import costs), resident memory.

Both bots run as their own processes at once (`adaptbot run`, and the relay below), each polling a fake Telegram
server of its own, against the same scripted model server; the fakes run in this process, and CPU and memory are
the bot process's own. The relay is the smallest useful streaming bot: aiogram polling, a bare httpx SSE loop over
the model's answer, the final text sent with sendMessage (no memory, no previews, no inbox, no guards). Their
bursts are interleaved (`--rounds`), so a ratio compares the two on the same machine state.

Answers: `short` (one chunk), `30` and `300` chunks (words of a non-repeating text, so no guard cuts them).

    .venv/bin/python bench/bench_bot.py [--messages 200] [--rounds 5] [--chats 40] [--rate-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

API_KEY = "sk-bench-0123456789"
HEAVY = ("torch", "llama_cpp", "chromadb", "chromadb_rust_bindings", "onnxruntime", "tokenizers", "numpy")
_VOCAB = ("model answer stream token chat window latency memory budget server client question context prompt "
          "level agent tool search source page document vector index cache queue worker thread event loop "
          "delta usage quota guard language number figure table code block line word letter river mountain "
          "city market garden winter summer morning evening coffee paper pencil bridge tower planet ocean").split()


def answer_text(chunks: int, seed: int = 7) -> Text:
    """A non-periodic answer of about `chunks` streamed pieces (one word each)."""
    rng = random.Random(seed)
    words = [rng.choice(_VOCAB) for _ in range(chunks)]
    text = " ".join(words) + "."
    return Text(text, chunk_size=math.ceil(len(text) / chunks))


class TimedTelegram(FakeTelegram):
    """Records when each chat received a final message (sendMessage) and when polling first began."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: dict[int, list[float]] = {}
        self.first_poll: float | None = None

    async def _m_sendMessage(self, params):  # type: ignore[no-untyped-def]
        result = await super()._m_sendMessage(params)
        self.delivered.setdefault(int(params["chat_id"]), []).append(time.perf_counter())
        return result

    async def _m_getUpdates(self, params):  # type: ignore[no-untyped-def]
        if self.first_poll is None:
            self.first_poll = time.perf_counter()
        return await super()._m_getUpdates(params)


class BotProcess:
    """One bot process: started, measured (CPU, RSS) and stopped from here."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None

    async def start(self, tg: TimedTelegram) -> float:
        """Start; seconds until the first getUpdates."""
        tg.first_poll = None
        started = time.perf_counter()
        self._spawn()
        await tg.wait_for(lambda: tg.first_poll is not None, timeout=120)
        assert tg.first_poll is not None
        return tg.first_poll - started

    def _spawn(self) -> None:
        with open(self.cwd / f"{self.name}.log", "wb") as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=log)
        self.ps = psutil.Process(self.proc.pid)
        if self.argv[0].endswith("py-spy"):  # profiled: the figures are the Python process's, not py-spy's
            while not self.ps.children():
                time.sleep(0.01)
            self.ps = self.ps.children()[0]

    def cpu(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        assert self.ps is not None
        return self.ps.memory_info().rss / 2**20

    def log(self) -> str:
        return (self.cwd / f"{self.name}.log").read_text(errors="replace")

    def native_libraries(self) -> list[str]:
        """The heavy packages whose native code the process has mapped (torch, llama.cpp, chromadb, ...)."""
        assert self.ps is not None
        paths = {m.path for m in self.ps.memory_maps(grouped=True)}
        return [name for name in HEAVY if any(f"/{name}/" in p or f"/{name}." in p for p in paths)]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ps.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            for _ in range(300):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                self.proc.kill()
            self.proc.wait()


def bot_env(tg: TimedTelegram, llm: ScriptedOpenAI, data: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(data), "PYTHONPATH": str(ROOT),
           "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_BASE": tg.base_url, "OPENAI_API_KEY": API_KEY,
           "OPENAI_BASE_URL": llm.base_url, "OPENAI_MODEL": "scripted", "DATA_DIR": str(data / "data"),
           "DEFAULT_MODE": "zero-shot cloud", "SEND_INTERVAL": "0", "GROUP_SEND_INTERVAL": "0",
           "RATE_LIMIT_PER_MINUTE": "0", "LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    env.update(extra)
    return env


TAIL = 0.3  # seconds after the last answer in which a bot finishes its bookkeeping (journal, inbox) for it


async def burst(tg: TimedTelegram, bot: BotProcess, chats: int, per_chat: int,
                first_chat: int) -> tuple[float, list[float], float]:
    """Send `per_chat` messages in each chat at once; wait for every answer; return (seconds, latencies, CPU s).
    The CPU is read `TAIL` seconds after the last answer arrived: what a bot does once an answer is sent (the
    delivery journal, the inbox's finish and next claim) belongs to the burst, and interleaved with another bot's
    burst it would otherwise be counted for neither."""
    sent: dict[int, list[float]] = {}
    start, cpu = time.perf_counter(), bot.cpu()
    for i in range(per_chat):
        for c in range(first_chat, first_chat + chats):
            sent.setdefault(c, []).append(time.perf_counter())
            tg.user_says(c, f"question {i} from {c}")
    total = chats * per_chat
    await tg.wait_for(lambda: sum(len(tg.delivered.get(c, [])) for c in sent) >= total, timeout=900)
    elapsed = time.perf_counter() - start
    latencies = [d - s for c in sent for s, d in zip(sent[c], tg.delivered[c], strict=True)]
    await asyncio.sleep(TAIL)
    return elapsed, latencies, bot.cpu() - cpu


async def steady(tg: TimedTelegram, rate: float, seconds: float, chats: int, first_chat: int) -> list[float]:
    """`rate` messages a second for `seconds`, round-robin over `chats`; latencies to the final text."""
    sent: dict[int, list[float]] = {}
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        c = first_chat + i % chats
        sent.setdefault(c, []).append(time.perf_counter())
        tg.user_says(c, f"steady {i}")
    await tg.wait_for(lambda: sum(len(tg.delivered.get(c, [])) for c in sent) >= n, timeout=900)
    return [d - s for c in sent for s, d in zip(sent[c], tg.delivered[c], strict=True)]


def q95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


async def settle(bot: BotProcess, quiet: float = 0.02, period: float = 0.5, limit: float = 30.0) -> None:
    """Wait until the bot is idle (less than `quiet` s of CPU per `period`): its warm-up task, started once it
    polls, is not counted in the first measured burst."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = bot.cpu()
        await asyncio.sleep(period)
        if bot.cpu() - before < quiet:
            return
    print(f"{bot.name} was still busy after {limit:.0f} s; measuring anyway", flush=True)


async def rounds(bots: dict[str, tuple[BotProcess, TimedTelegram, int]], llm: ScriptedOpenAI,
                 args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """CPU per message and per chunk, throughput and burst latency for each answer shape, with the bots' bursts
    interleaved: `args.rounds` rounds, each a burst for every bot in turn (the order reversed every other round),
    so both meet the same machine. This machine's speed drifts by 20% within a minute (a bare Python loop does),
    which one burst each, minutes apart, turned into the ratio. CPU per message is each bot's CPU over all its
    rounds divided by its messages: what runs now and then (the relay's full garbage collections, 0.1-0.3 s each
    in a process holding aiogram's types; SQLite's checkpoints) is counted in the round it falls in, as it would
    be in production. The range of the rounds' own ratios is printed beside the ratio."""
    assert args.chats < 1_000 and args.rounds < 100, "chat ids of rounds and shapes would overlap"
    figures: dict[str, dict[str, float]] = {name: {} for name in bots}
    shapes = {"short": (Text("a short answer."), args.messages), "30": (answer_text(30), args.messages),
              "300": (answer_text(300), max(args.chats, args.messages // 5))}
    for i, (shape, (reply, count)) in enumerate(shapes.items()):
        llm.default = lambda body, reply=reply: reply
        per_chat = max(1, count // args.chats)
        chunks = math.ceil(len(reply.content) / reply.chunk_size)
        cpu: dict[str, list[float]] = {name: [] for name in bots}
        latencies: dict[str, list[float]] = {name: [] for name in bots}
        elapsed = dict.fromkeys(bots, 0.0)
        for r in range(args.rounds):
            for name in (list(bots) if r % 2 == 0 else list(reversed(bots))):
                bot, tg, base = bots[name]
                seconds, lat, used = await burst(tg, bot, args.chats, per_chat, base + 100_000 * (i + 1) + 1_000 * r)
                cpu[name].append(used / len(lat))
                latencies[name] += lat
                elapsed[name] += seconds
        for name in bots:
            ms = sum(cpu[name]) / args.rounds * 1000  # every round has the same number of messages
            figures[name][f"cpu_ms_{shape}"] = ms
            figures[name][f"chunk_us_{shape}"] = ms / chunks * 1000
            figures[name][f"msg_s_{shape}"] = len(latencies[name]) / elapsed[name]
            figures[name][f"p95_ms_{shape}"] = q95(latencies[name]) * 1000
        first, *others = bots
        for name in others:
            ratios = sorted(a / b for a, b in zip(cpu[name], cpu[first], strict=True))
            figures[name][f"ratio_{shape}"] = figures[name][f"cpu_ms_{shape}"] / figures[first][f"cpu_ms_{shape}"]
            figures[name][f"ratio_range_{shape}"] = ratios[0], ratios[-1]  # type: ignore[assignment]
    return figures


async def loads(name: str, bot: BotProcess, tg: TimedTelegram, llm: ScriptedOpenAI, args: argparse.Namespace,
                base: int, figures: dict[str, float]) -> None:
    """The steady load and 50 chats at once, then the bot's resident memory; the bot is stopped after."""
    llm.default = lambda body: answer_text(30)
    latencies = await steady(tg, args.rate, args.rate_seconds, args.chats, base + 10_000)
    figures["steady_p50_ms"] = statistics.median(latencies) * 1000
    figures["steady_p95_ms"] = q95(latencies) * 1000
    slow = answer_text(30)
    llm.default = lambda body: Text(slow.content, delay=1.0, chunk_size=slow.chunk_size)
    figures["wall_50x1s"], _, _ = await burst(tg, bot, 50, 1, base + 20_000)
    figures["rss_mb"] = bot.rss_mb()
    heavy = bot.native_libraries()
    await bot.stop()
    print(f"{name}: start-up {figures['startup_s']:.2f} s, RSS after the run {figures['rss_mb']:.0f} MB, "
          f"native libraries of heavy packages mapped: {', '.join(heavy) or 'none'}", flush=True)


async def import_costs(tg: TimedTelegram, llm: ScriptedOpenAI, data: Path, top: int = 8) -> list[tuple[int, str]]:
    """The bot's costliest top-level imports (`python -X importtime`, ms) up to its first getUpdates; the process
    stops then, so what its warm-up task imported by that moment is counted too."""
    bot = BotProcess("importtime", [sys.executable, "-X", "importtime", "-m", "bot.cli", "run"],
                     bot_env(tg, llm, data, LOG_LEVEL="WARNING"), data)
    await bot.start(tg)
    await bot.stop()
    costs = []
    for line in bot.log().splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # top level: no indentation
        if m:
            costs.append((int(m.group(1)) // 1000, m.group(2)))
    return sorted(costs, reverse=True)[:top]


def report(relay: dict[str, float], ours: dict[str, float]) -> None:
    print(f"\n{'':26}{'relay':>10}{'adaptbot':>10}{'ratio':>8}")
    rows = [("start-up to getUpdates, s", "startup_s"), ("RSS after the run, MB", "rss_mb")]
    for shape in ("short", "30", "300"):
        rows += [(f"CPU/msg {shape}, ms", f"cpu_ms_{shape}"), (f"CPU/chunk {shape}, us", f"chunk_us_{shape}"),
                 (f"throughput {shape}, msg/s", f"msg_s_{shape}"), (f"burst p95 {shape}, ms", f"p95_ms_{shape}")]
    rows += [("steady p50, ms", "steady_p50_ms"), ("steady p95, ms", "steady_p95_ms"),
             ("50 chats x 1 s model, s", "wall_50x1s")]
    for label, key in rows:
        shape = key.rpartition("_")[2]
        if key.startswith("cpu_ms_"):  # and the range of the rounds' own ratios
            low, high = ours[f"ratio_range_{shape}"]  # type: ignore[misc]
            ratio = f"{ours[f'ratio_{shape}']:8.2f}  (rounds {low:.2f}-{high:.2f})"
        elif key.startswith("chunk_us_"):
            ratio = f"{ours[f'ratio_{shape}']:8.2f}"
        else:
            ratio = f"{ours[key] / relay[key]:8.2f}"
        print(f"{label:26}{relay[key]:10.2f}{ours[key]:10.2f}{ratio}")
    print(f"\ntargets: CPU/msg 30 chunks {ours['cpu_ms_30']:.1f} ms (<= 20, <= 2x relay: "
          f"{ours['ratio_30']:.2f}x); 50 x 1 s {ours['wall_50x1s']:.2f} s (<= 1.5); "
          f"start-up {ours['startup_s']:.2f} s (<= 3); RSS {ours['rss_mb']:.0f} MB (<= 180)")


async def main(args: argparse.Namespace) -> None:
    async with TimedTelegram() as tg_relay, TimedTelegram() as tg_ours, ScriptedOpenAI() as llm:
        data = Path(tempfile.mkdtemp(prefix="bench-bot-"))
        relay = BotProcess("relay", [sys.executable, str(THIS), "--relay", tg_relay.token,
                                     tg_relay.base_url, llm.base_url], bot_env(tg_relay, llm, data), data)
        argv = [sys.executable, "-m", "bot.cli", "run"]
        if args.profile:
            argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--gil", "--format", "raw",
                    "--rate", "250", "--output", args.profile, "--", *argv]
        adaptbot = BotProcess("adaptbot", argv, bot_env(tg_ours, llm, data), data)
        # both alive at once, each with its own fake Telegram; chat ids apart
        bots = {"relay": (relay, tg_relay, 1_000_000), "adaptbot": (adaptbot, tg_ours, 2_000_000)}
        startup = {}
        for name, (bot, tg, base) in bots.items():
            startup[name] = await bot.start(tg)
            llm.default = lambda body: answer_text(30)
            await burst(tg, bot, 5, 2, base)  # warm-up: connections, lazy imports, the first database writes
        for bot, _, _ in bots.values():
            await settle(bot)
        figures = await rounds(bots, llm, args)
        for name, (bot, tg, base) in bots.items():
            figures[name]["startup_s"] = startup[name]
            await loads(name, bot, tg, llm, args, base, figures[name])
        report(figures["relay"], figures["adaptbot"])
        print("\nadaptbot's costliest imports (cumulative ms) up to its first getUpdates and the warm-up begun then:")
        for ms, name in await import_costs(tg_ours, llm, data):
            print(f"  {ms:6d}  {name}")
        if args.profile:
            await asyncio.sleep(1.0)  # py-spy writes its file as the bot exits
            print_profile(Path(args.profile))


def print_profile(path: Path, top: int = 15) -> None:
    """py-spy's samples (taken with --gil: only code holding the GIL, so each thread weighs what CPU it takes): the
    share of the event loop, the SQLite thread and imports, then the top entries of each thread outside imports,
    by own time and by total time per function."""
    threads = {"event loop": ("bot/cli.py",), "SQLite thread": ("_DaemonThread._loop",)}
    own: dict[str, dict[str, int]] = {name: {} for name in threads}
    total: dict[str, dict[str, int]] = {name: {} for name in threads}
    shares: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # one entry per function, not per line
        n = int(count)
        samples += n
        if any("_find_and_load" in f for f in frames):
            shares["imports"] = shares.get("imports", 0) + n
            continue
        name = next((t for t, marks in threads.items() if any(m in f for f in frames for m in marks)), "other")
        shares[name] = shares.get(name, 0) + n
        if name not in own:
            continue
        own[name][frames[-1]] = own[name].get(frames[-1], 0) + n
        for frame in set(frames):
            total[name][frame] = total[name].get(frame, 0) + n
    print(f"\npy-spy: {samples} samples holding the GIL: " +
          ", ".join(f"{name} {n / samples:.0%}" for name, n in sorted(shares.items(), key=lambda kv: -kv[1])))
    for name in threads:
        print(f"{name}, top own time (share of all samples):")
        for frame, n in sorted(own[name].items(), key=lambda kv: -kv[1])[:top // 2]:
            print(f"  {n / samples:6.1%}  {frame}")
        print(f"{name}, top total time, bot code and libraries:")
        shown = 0
        for frame, n in sorted(total[name].items(), key=lambda kv: -kv[1]):
            if "(asyncio" in frame or "(threading" in frame or "<module>" in frame or "runpy" in frame \
                    or "bot/cli.py" in frame or "_DaemonThread._loop" in frame:
                continue
            print(f"  {n / samples:6.1%}  {frame}")
            shown += 1
            if shown == top:
                break


def relay_main(token: str, tg_base: str, llm_base: str) -> None:
    """The relay bot: aiogram polling, a bare httpx SSE loop, the final text sent as one message."""
    import json

    import httpx
    from aiogram import Bot, Dispatcher, F
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message

    async def run() -> None:
        client = httpx.AsyncClient(base_url=llm_base, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"})
        dp = Dispatcher()

        @dp.message(F.text)
        async def relay(message: Message) -> None:
            parts: list[str] = []
            body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": message.text}]}
            async with client.stream("POST", "/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        for choice in json.loads(line[6:])["choices"]:
                            parts.append(choice["delta"].get("content") or "")
            await message.answer("".join(parts))

        bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg_base)))
        await dp.start_polling(bot, handle_signals=True, polling_timeout=1, close_bot_session=True)

    asyncio.run(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per burst (300-chunk burst: a fifth)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved bursts per bot and answer shape")
    parser.add_argument("--chats", type=int, default=40)
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second of the steady load")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--profile", metavar="FILE", help="run adaptbot under py-spy; collapsed stacks to FILE")
    parser.add_argument("--relay", nargs=3, metavar=("TOKEN", "TELEGRAM", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        relay_main(*args.relay)
    else:
        if args.profile:
            args.profile = str(Path(args.profile).resolve())  # the bot runs in a directory of its own
        asyncio.run(main(args))
