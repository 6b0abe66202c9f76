"""What the durable inbox costs: messages/s and p95 latency with it and without it, then the same under faults.

Two copies of the real bot (BotApp, polling) run side by side, each in a process of its own (as in production), each
against its own fake Telegram server, both against one scripted model server; the fakes and the measuring run in
this process, on loopback. Same code, same settings, a database each:

* **inbox**: the bot as shipped. Every update is recorded before it is confirmed to Telegram, claimed by its
  chat's worker, marked done after the answer is delivered.
* **no inbox** (the baseline): the same dispatcher and handlers, but `BotApp.pump` is replaced by `DirectPump`
  below, which feeds each update straight to aiogram's dispatcher with no record, keeping one worker per chat in
  memory (the handlers refuse a second answer in a chat that is busy, so both sides must keep chats in order).
  A crash loses whatever it holds: that is what the inbox buys.

Phases:
1. burst: `--chats` private chats send `--messages` in all at once; throughput = messages / time to the last
   answer. Rounds alternate between the bots (ABBA...). Also the bot process's CPU time per message (threads
   included, so SQLite's too; a PostgreSQL server's own CPU is not), which other load on the machine disturbs less;
2. paced: both bots at once, each getting messages at a quarter of the slower bot's burst rate, chats in turn, so
   latency is one message's own path (sent -> final answer delivered), not a queue;
3. faults (the issue's mix), both bots at once: 20% of sends answered 429 (retry_after 1-3 s), 5% answered 502,
   10% of messages meet a model fault (500 once, 500 always, a stream broken before or after its first token, a
   stall past OPENAI_TIMEOUT). Delivered / sent counts messages that got exactly one final message (the answer, or
   the part streamed plus a notice), in order, none twice;
4. outage: a fresh pair of bots with a short SEND_RETRY_SECONDS (`--outage-retry`); Telegram answers every send with
   502 for three times that window, then recovers. The HTTP retry alone cannot carry an answer over it: the inbox
   runs the update again and delivers the stored answer, the baseline loses it. Delivered / sent for both.

    .venv/bin/python bench/bench_inbox.py [--messages 400] [--chats 100] [--rounds 6] [--fault-chats 100]
                                          [--outage-chats 50] [--outage-retry 2]
    scripts/with-postgres.sh sh -c '.venv/bin/python bench/bench_inbox.py --database-url "$PG_TEST_URL"'
    .venv/bin/python bench/bench_inbox.py --a-a    # both bots without the inbox: the bench's own noise

Targets: throughput ratio inbox / no inbox >= 0.8 (the inbox costs <= 20%); delivered / sent = 1.0 under faults and
for the inbox through the outage (the baseline's figure there is what the inbox buys, not a target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web

from bot.inbox import chat_key_of
from tests.conftest import make_settings
from tests.fakes.fault_mix import ANSWERED, MODEL_FAULTS, flaky_model, label, plan_model_faults
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram, FaultPlan

log = logging.getLogger("bench_inbox")

BASELINE, INBOX = "no inbox", "inbox"
# the same settings for both bots and every phase: no pacing (it would hide what is measured), retries on
SETTINGS: dict[str, Any] = dict(default_mode="zero-shot", send_interval=0.0, group_send_interval=0.0,
                                rate_limit_per_minute=0, use_message_drafts=True, openai_timeout=1.0,
                                openai_max_retries=2, send_retry_seconds=300, stream_edit_interval=0.2,
                                shutdown_timeout=60)
SEND_METHODS = {"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction", "deleteMessage"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the baseline's pump, and the bot process ------------------------------------------------------------------


class DirectPump:
    """The baseline: updates go straight to aiogram's dispatcher, never recorded; one in-memory worker per chat."""

    def __init__(self, dp: Dispatcher, bot: Bot) -> None:
        self.dp, self.bot = dp, bot
        self._queues: dict[str, deque[dict[str, Any]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self.processed = 0

    def start(self) -> None:
        """Nothing to scan: what is not in memory does not exist."""

    @property
    def busy(self) -> int:
        return len(self._workers)

    @property
    def closing(self) -> bool:
        return self._closing

    async def submit(self, updates: Sequence[dict[str, Any]], parsed: Sequence[Update] = ()) -> list[int]:
        objects = {u.update_id: u for u in parsed}
        for raw in updates:
            key = chat_key_of(raw)
            self._queues.setdefault(key, deque()).append(
                objects.get(raw["update_id"]) or Update.model_validate(raw, context={"bot": self.bot}))
            if key not in self._workers and not self._closing:
                self._workers[key] = asyncio.create_task(self._drain(key), name=f"direct-{key}")
        return sorted(int(u["update_id"]) for u in updates)

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue and not self._closing:
                update = queue.popleft()
                try:
                    await self.dp.feed_update(self.bot, update)
                except Exception:  # as the inbox pump does: log it, go on with the chat
                    log.exception("update %s failed", update.update_id)
                self.processed += 1
        finally:
            del self._workers[key]
            if not queue:
                del self._queues[key]

    async def drain(self, grace: float) -> None:
        self._closing = True
        workers = list(self._workers.values())
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace or None)
            for task in late:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


async def serve_bot(pump: str, token: str, telegram_url: str, llm_url: str, data_dir: str,
                    database_url: str | None, send_retry: float | None = None) -> None:
    """The child process: one bot, polling its fake Telegram, until SIGTERM."""
    from bot.app import BotApp

    logging.basicConfig(level=logging.ERROR, format=f"[{pump}] %(levelname)s %(name)s: %(message)s")
    overrides = dict(SETTINGS, **({"database_url": database_url} if database_url else {}))
    if send_retry is not None:
        overrides["send_retry_seconds"] = send_retry
    settings = make_settings(Path(data_dir), SimpleNamespace(token=token, base_url=telegram_url),
                             SimpleNamespace(base_url=llm_url), **overrides)  # type: ignore[arg-type]
    app = await BotApp.create(settings)
    if pump == "direct":
        # the only difference: BotApp.start() starts `pump`, and polling hands it every update
        app.pump = DirectPump(app.dp, app.bot)  # type: ignore[assignment]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await app.start()
    print("ready", flush=True)
    await stop.wait()
    await app.stop()


class BotProcess:
    """A bot in a process of its own (this script with --serve-bot)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, pump: str, tg: FakeTelegram, llm: ScriptedOpenAI, data_dir: Path,
                    database_url: str | None, send_retry: float | None = None) -> BotProcess:
        args = ["--serve-bot", pump, "--token", tg.token, "--telegram", tg.base_url, "--llm", llm.base_url,
                "--data-dir", str(data_dir)] + (["--database-url", database_url] if database_url else []) + (
                    ["--send-retry", str(send_retry)] if send_retry is not None else [])
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, *args, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise SystemExit(f"the {pump} bot did not start (exit code {await proc.wait()})")
        return cls(proc)

    def cpu_seconds(self) -> float:
        """User + system time of the bot process, all its threads."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 90)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# --- measuring -------------------------------------------------------------------------------------------------


class TimedTelegram(FakeTelegram):
    """Records when each chat received a final message (a sendMessage that succeeded), and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: dict[int, list[tuple[float, str]]] = {}

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        result = await super()._m_sendMessage(params)
        if not isinstance(result, web.Response):
            self.delivered.setdefault(int(params["chat_id"]), []).append((time.perf_counter(), params["text"]))
        return result


@dataclass
class Variant:
    name: str
    tg: TimedTelegram
    bot: BotProcess
    elapsed: dict[str, float] = field(default_factory=dict)  # phase -> seconds (summed over rounds)
    cpu: dict[str, float] = field(default_factory=dict)  # phase -> CPU seconds of the bot process
    latencies: dict[str, list[float]] = field(default_factory=dict)  # phase -> seconds per message
    sent: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)  # phase -> what went wrong (lost, doubled...)

    def record(self, phase: str, elapsed: float, cpu: float, latencies: list[float], sent: int,
               problems: list[str]) -> None:
        self.elapsed[phase] = self.elapsed.get(phase, 0.0) + elapsed
        self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu
        self.latencies.setdefault(phase, []).extend(latencies)
        self.sent[phase] = self.sent.get(phase, 0) + sent
        self.problems.setdefault(phase, []).extend(problems)

    def msg_s(self, phase: str) -> float:
        return self.sent[phase] / self.elapsed[phase]

    def cpu_ms(self, phase: str) -> float:
        return 1000 * self.cpu[phase] / self.sent[phase]

    def delivered(self, phase: str) -> int:
        return len(self.latencies[phase])


async def send(variant: Variant, phase: str, plan: list[tuple[float, int, int]],
               kinds: dict[str, str] | None = None, patience: float = 300.0) -> tuple[float, float]:
    """Send `plan` [(offset s, chat, i)], wait for every answer, check them, record; returns (seconds, CPU s)."""
    tg = variant.tg
    sent: dict[int, list[float]] = {}
    before = {chat: len(tg.delivered.get(chat, [])) for _, chat, _ in plan}
    expected = dict.fromkeys(before, 0)
    for _, chat, _ in plan:
        expected[chat] += 1
    cpu0 = variant.bot.cpu_seconds()
    start = time.perf_counter()
    for offset, chat, i in plan:
        if offset:
            await asyncio.sleep(max(0.0, start + offset - time.perf_counter()))
        sent.setdefault(chat, []).append(time.perf_counter())
        tg.user_says(chat, label(chat, i))

    def done() -> bool:
        return all(len(tg.delivered.get(c, [])) - before[c] >= n for c, n in expected.items())

    problems: list[str] = []
    try:
        await tg.wait_for(done, timeout=patience)
    except AssertionError:
        problems.append(f"not all answered within {patience:.0f} s")
    elapsed, cpu = time.perf_counter() - start, variant.bot.cpu_seconds() - cpu0
    await asyncio.sleep(0.5)  # a doubled answer would show up now
    latencies: list[float] = []
    for chat, times in sent.items():
        got = tg.delivered.get(chat, [])[before[chat]:]
        if len(got) > len(times):
            problems.append(f"chat {chat}: {len(got)} final messages for {len(times)} sent")
        for i, (t_sent, (t_got, text)) in enumerate(zip(times, got, strict=False)):
            kind = (kinds or {}).get(label(chat, i), "ok")
            ok = text == f"echo: {label(chat, i)}" if kind in ANSWERED else "⚠️" in text
            if not ok:
                problems.append(f"chat {chat} message {i} ({kind}): got {text[:60]!r}")
                continue
            latencies.append(t_got - t_sent)
    variant.record(phase, elapsed, cpu, latencies, len(plan), problems)
    return elapsed, cpu


def burst_plan(chats: Sequence[int], per_chat: int) -> list[tuple[float, int, int]]:
    return [(0.0, chat, i) for i in range(per_chat) for chat in chats]


def paced_plan(chats: Sequence[int], count: int, rate: float) -> list[tuple[float, int, int]]:
    """`count` messages at `rate`/s, chats in turn (a chat's next message comes after len(chats)/rate s)."""
    return [(k / rate, chats[k % len(chats)], k // len(chats)) for k in range(count)]


def pct(values: list[float], q: int) -> float:
    """The q-th percentile in ms."""
    if len(values) < 2:
        return (values[0] if values else float("nan")) * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def row(variant: Variant, phase: str) -> str:
    lat = variant.latencies[phase]
    return (f"  {variant.name:>9}: {variant.msg_s(phase):6.1f} msg/s  p50 {pct(lat, 50):7.1f} ms  "
            f"p95 {pct(lat, 95):7.1f} ms  CPU {variant.cpu_ms(phase):5.1f} ms/msg  "
            f"delivered {variant.delivered(phase)}/{variant.sent[phase]}")


@contextlib.asynccontextmanager
async def databases(url: str | None, names: Sequence[str]) -> AsyncIterator[dict[str, str | None]]:
    """A fresh database per bot: None (a SQLite file in the bot's data dir), or new databases on `url`'s server."""
    if url is None:
        yield dict.fromkeys(names)
        return
    if not url.startswith("postgresql"):
        raise SystemExit("--database-url: expected postgresql+asyncpg://user@host:port/db (SQLite is the default)")
    from sqlalchemy.engine import make_url

    from tests.pg import pg_execute

    base = make_url(url)
    created = {name: f"adaptbot_bench_{uuid.uuid4().hex[:8]}_{i}" for i, name in enumerate(names)}

    for db in created.values():
        await pg_execute(url, f'CREATE DATABASE "{db}"')
    try:
        yield {name: base.set(database=db).render_as_string(hide_password=False) for name, db in created.items()}
    finally:
        for db in created.values():
            await pg_execute(url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# --- the run ---------------------------------------------------------------------------------------------------


async def main(messages: int, chats: int, rounds: int, fault_chats: int, fault_per_chat: int,
               database_url: str | None, a_a: bool, outage_chats: int = 50, outage_retry: float = 2.0) -> int:
    per_chat = max(1, messages // chats)
    messages = per_chat * chats
    t0 = time.perf_counter()
    names = (BASELINE, BASELINE + "'") if a_a else (BASELINE, INBOX)
    pumps = {BASELINE: "direct", BASELINE + "'": "direct", INBOX: "inbox"}
    print(f"bench_inbox: bursts of {messages} messages ({chats} chats x {per_chat}), {rounds} rounds per bot; "
          f"faults: {fault_chats} chats x {fault_per_chat} per bot; database: "
          f"{'postgresql' if database_url else 'sqlite'}; {os.cpu_count()} CPUs"
          + ("; A/A: both bots WITHOUT the inbox" if a_a else ""))
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-inbox-")))  # removed last
        llm = await stack.enter_async_context(ScriptedOpenAI())
        urls = await stack.enter_async_context(databases(database_url, names))
        variants: list[Variant] = []
        for name in names:
            tg = await stack.enter_async_context(TimedTelegram())
            bot = await BotProcess.start(pumps[name], tg, llm, tmp / f"bot{len(variants)}", urls[name])
            stack.push_async_callback(bot.stop)
            variants.append(Variant(name, tg, bot))
        base, other = variants
        for v in variants:  # warm-up: first queries, connection pools, lazy imports
            await send(v, "warm-up", burst_plan(range(900_000, 900_010), 2))

        # --- 1. burst: throughput ------------------------------------------------------------------------
        print("burst: all messages at once (latency here = waiting behind the chat's earlier messages)")
        ratios: list[tuple[float, float]] = []  # (throughput, CPU per message): other / base
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]  # ABBA: drift in the machine hits both alike
            got: dict[str, tuple[float, float]] = {}
            for v in order:
                got[v.name] = await send(v, "burst", burst_plan(range(1_000 * (r + 1), 1_000 * (r + 1) + chats),
                                                                per_chat))
            (b_s, b_cpu), (o_s, o_cpu) = got[base.name], got[other.name]
            ratios.append((b_s / o_s, o_cpu / b_cpu))
            print(f"  round {r + 1}: {base.name} {messages / b_s:5.1f} msg/s, {other.name} {messages / o_s:5.1f} "
                  f"msg/s -> ratio {ratios[-1][0]:.2f}; CPU per message ratio {ratios[-1][1]:.2f}")
        for v in variants:
            print(row(v, "burst"))

        # --- 2. paced: one message's latency ---------------------------------------------------------------
        rate = 0.25 * min(v.msg_s("burst") for v in variants)
        count = max(40, min(messages, int(rate * 15)))  # about 15 s
        await asyncio.gather(*(send(v, "paced", paced_plan(range(100_000, 100_000 + chats), count, rate))
                               for v in variants))
        print(f"paced: {count} messages per bot at {rate:.1f} msg/s, both bots at once (latency of one message)")
        for v in variants:
            print(row(v, "paced"))

        # --- 3. the fault mix ------------------------------------------------------------------------------
        # each bot its own chats (the model counts attempts per message), the same pattern of faults for both
        ranges = [range(200_000 * (j + 1), 200_000 * (j + 1) + fault_chats) for j in range(len(variants))]
        kinds: dict[str, str] = {}
        for chats_range in ranges:
            kinds.update(plan_model_faults(chats_range, fault_per_chat, seed=11))
        llm.default = flaky_model(kinds)
        for v in variants:
            v.tg.faults = FaultPlan(set(SEND_METHODS), rate_429=0.20, retry_after=(1, 3), rate_5xx=0.05, seed=3)
        await asyncio.gather(*(send(v, "faults", burst_plan(r_, fault_per_chat), kinds)
                               for v, r_ in zip(variants, ranges, strict=True)))
        shares = {k: sum(1 for x in kinds.values() if x == k) // len(variants) for k in MODEL_FAULTS}
        print(f"faults: {fault_chats} chats x {fault_per_chat} at once per bot, both bots at once; 20% of sends 429 "
              f"(retry_after 1-3 s), 5% 502; model faults on {sum(shares.values())} of "
              f"{fault_chats * fault_per_chat} messages per bot {shares}")
        for v in variants:
            injected = {s: sum(1 for _, st in v.tg.fault_log if st == s) for s in (429, 502)}
            print(row(v, "faults") + f"  (injected: {injected[429]} x 429, {injected[502]} x 502)")

        # --- 4. an outage longer than the send retry window -----------------------------------------------------
        llm.default = flaky_model({})  # every message answered
        outage: list[Variant] = []
        urls_o = await stack.enter_async_context(databases(database_url, names))  # fresh ones: a new pair of bots
        for v in variants:
            tg = await stack.enter_async_context(TimedTelegram())
            bot = await BotProcess.start(pumps[v.name], tg, llm, tmp / f"outage{len(outage)}", urls_o[v.name],
                                         send_retry=outage_retry)
            stack.push_async_callback(bot.stop)
            outage.append(Variant(v.name, tg, bot))
        for ov in outage:
            ov.tg.faults = FaultPlan(set(SEND_METHODS), rate_5xx=1.0)

        async def recover() -> None:
            await asyncio.sleep(3 * outage_retry)
            for ov in outage:
                ov.tg.faults = None

        chats_o = range(300_000, 300_000 + outage_chats)
        await asyncio.gather(recover(), *(send(ov, "outage", burst_plan(chats_o, 1), patience=60) for ov in outage))
        print(f"outage: {outage_chats} chats x 1 per bot; every send answered 502 for {3 * outage_retry:.0f} s, "
              f"SEND_RETRY_SECONDS={outage_retry:g}")
        for ov in outage:
            print(f"  {ov.name:>9}: delivered {ov.delivered('outage')}/{ov.sent['outage']}")

        # --- verdict -----------------------------------------------------------------------------------------
        print("summary")
        throughput = other.msg_s("burst") / base.msg_s("burst")
        tp_rounds = [t for t, _ in ratios]
        cpu_rounds = [c for _, c in ratios]
        print(f"  throughput ratio {other.name} / {base.name}: {throughput:.2f} (all rounds together; per round: "
              f"median {statistics.median(tp_rounds):.2f}, {min(tp_rounds):.2f}-{max(tp_rounds):.2f}); "
              f"target >= 0.8")
        print(f"  CPU per message {other.name} / {base.name}: {other.cpu_ms('burst') / base.cpu_ms('burst'):.2f} "
              f"(per round: median {statistics.median(cpu_rounds):.2f}, {min(cpu_rounds):.2f}-{max(cpu_rounds):.2f})")
        for q in (50, 95):
            b, o = pct(base.latencies["paced"], q), pct(other.latencies["paced"], q)
            print(f"  paced p{q} latency: {base.name} {b:.1f} ms, {other.name} {o:.1f} ms ({o - b:+.1f} ms)")
        failed = 0
        for v in variants:
            print(f"  {v.name}: delivered / sent under faults = {v.delivered('faults') / v.sent['faults']:.3f} "
                  f"(target 1.0)")
            for phase, problems in v.problems.items():
                for problem in problems[:5]:
                    print(f"  {v.name} {phase}: {problem}")
                failed += len(problems)
        for ov in outage:
            share = ov.delivered("outage") / ov.sent["outage"]
            target = "target 1.0" if ov.name == INBOX else "no inbox: lost when the outage outlives the retry"
            print(f"  {ov.name}: delivered / sent through the outage = {share:.3f} ({target})")
            if ov.name == INBOX:
                failed += len(ov.problems["outage"])
        print(f"total {time.perf_counter() - t0:.0f} s")
        return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per burst (per bot and round)")
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--fault-chats", type=int, default=100)
    parser.add_argument("--fault-per-chat", type=int, default=3)
    parser.add_argument("--outage-chats", type=int, default=50)
    parser.add_argument("--outage-retry", type=float, default=2.0, help="SEND_RETRY_SECONDS of the outage phase")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server to create throwaway databases on "
                        "(postgresql+asyncpg://...); default: SQLite files")
    parser.add_argument("--a-a", action="store_true", help="both bots without the inbox: shows the bench's own noise")
    serve = parser.add_argument_group("internal: one bot process")
    serve.add_argument("--serve-bot", choices=["direct", "inbox"])
    serve.add_argument("--token")
    serve.add_argument("--telegram")
    serve.add_argument("--llm")
    serve.add_argument("--data-dir")
    serve.add_argument("--send-retry", type=float, default=None)
    args = parser.parse_args()
    if args.serve_bot:
        asyncio.run(serve_bot(args.serve_bot, args.token, args.telegram, args.llm, args.data_dir,
                              args.database_url, args.send_retry))
        sys.exit(0)
    sys.exit(asyncio.run(main(args.messages, args.chats, args.rounds, args.fault_chats, args.fault_per_chat,
                              args.database_url, args.a_a, args.outage_chats, args.outage_retry)))
