"""Bot throughput and latency vs a minimal relay bot, and 50 chats against a 1-second model.

Both bots run for real (aiogram over HTTP) against the same fake Telegram server and the same scripted,
instant model server on loopback, in one run. The relay bot is the smallest useful bot: an aiogram handler that
calls the model endpoint with httpx and replies (no memory, no streaming, no inbox).

    .venv/bin/python bench/bench_bot.py [--messages 400] [--chats 40]
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

import httpx
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message

from bot.config import Settings
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, Text, echo
from tests.fakes.telegram_server import FakeTelegram


class TimedTelegram(FakeTelegram):
    """Records when each chat received a final message (sendMessage)."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: dict[int, list[float]] = {}

    async def _m_sendMessage(self, params):  # type: ignore[no-untyped-def]
        result = await super()._m_sendMessage(params)
        self.delivered.setdefault(int(params["chat_id"]), []).append(time.perf_counter())
        return result


async def burst(tg: TimedTelegram, chats: int, per_chat: int, first_chat: int) -> tuple[float, list[float], float]:
    """Send `per_chat` messages in each chat at once; wait for every answer; return (seconds, latencies, CPU s)."""
    sent: dict[int, list[float]] = {}
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(per_chat):
        for c in range(first_chat, first_chat + chats):
            sent.setdefault(c, []).append(time.perf_counter())
            tg.user_says(c, f"question {i} from {c}")
    total = chats * per_chat
    await tg.wait_for(lambda: sum(len(tg.delivered.get(c, [])) for c in sent) >= total, timeout=600)
    elapsed = time.perf_counter() - start
    latencies = [d - s for c in sent for s, d in zip(sent[c], tg.delivered[c], strict=True)]
    return elapsed, latencies, time.process_time() - cpu


async def run_relay(tg: TimedTelegram,
                    llm: ScriptedOpenAI) -> tuple[Bot, Dispatcher, asyncio.Task[None], httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=llm.base_url, timeout=30)
    dp = Dispatcher()

    @dp.message(F.text)
    async def relay(message: Message) -> None:
        r = await client.post("/chat/completions", json={"model": "scripted",
                                                         "messages": [{"role": "user", "content": message.text}]})
        await message.answer(r.json()["choices"][0]["message"]["content"])

    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    return bot, dp, task, client


def summary(name: str, elapsed: float, latencies: list[float], cpu: float) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=20)
    figures = {"msg_s": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000, "p95_ms": q[18] * 1000,
               "cpu_ms": cpu / len(latencies) * 1000}
    print(f"{name:>8}: {figures['msg_s']:7.1f} msg/s   p50 {figures['p50_ms']:7.1f} ms   "
          f"p95 {figures['p95_ms']:7.1f} ms   CPU {figures['cpu_ms']:5.1f} ms/msg (both fakes included)")
    return figures


async def main(messages: int, chats: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    per_chat = max(1, messages // chats)
    async with TimedTelegram() as tg, ScriptedOpenAI() as llm:
        # --- baseline: the relay bot -------------------------------------------------------------------
        bot, dp, task, client = await run_relay(tg, llm)
        await burst(tg, 5, 2, 900_000)  # warm-up
        relay = summary("relay", *await burst(tg, chats, per_chat, 1_000))
        await dp.stop_polling()
        await task
        await client.aclose()
        await bot.session.close()

        # --- adaptbot ----------------------------------------------------------------------------------
        runner = BotRunner(Path(tempfile.mkdtemp()), tg, llm)
        defaults = {name: Settings.model_fields[name].default for name in ("stream_grace", "stream_edit_interval")}
        await runner.start(default_mode="zero-shot", send_interval=0.0, group_send_interval=0.0, **defaults,
                           rate_limit_per_minute=0, use_message_drafts=True)
        await burst(tg, 5, 2, 800_000)  # warm-up
        ours = summary("adaptbot", *await burst(tg, chats, per_chat, 2_000))
        print(f"throughput ratio adaptbot/relay: {ours['msg_s'] / relay['msg_s']:.2f} (target >= 0.5); "
              f"CPU per message ratio relay/adaptbot: {relay['cpu_ms'] / ours['cpu_ms']:.2f}")

        # --- 50 chats at once against a model that takes 1 s ---------------------------------------------
        llm.default = lambda body: Text("slow answer", delay=1.0)
        elapsed, _, _ = await burst(tg, 50, 1, 3_000)
        print(f"50 chats x 1 s model: wall {elapsed:.2f} s -> {elapsed / 1.0:.2f} x the model time (target <= 1.5)")
        await runner.stop()

        # --- where the difference starts: the model client alone, same server, one call at a time ----------
        llm.default = echo
        plain, chain = await client_cost(llm)
        print(f"model client CPU per call: httpx (the relay's) {plain:.2f} ms, langchain-openai streaming "
              f"{chain:.2f} ms")


async def client_cost(llm: ScriptedOpenAI, calls: int = 200) -> tuple[float, float]:
    """CPU ms per call of the relay's httpx request and of the ChatOpenAI stream the bot uses (fake included)."""
    from langchain_openai import ChatOpenAI

    async with httpx.AsyncClient(base_url=llm.base_url, timeout=30) as client:
        cpu = time.process_time()
        for i in range(calls):
            r = await client.post("/chat/completions", json={"model": "scripted",
                                                             "messages": [{"role": "user", "content": f"q{i}"}]})
            r.json()
        plain = (time.process_time() - cpu) / calls * 1000
    model = ChatOpenAI(model="scripted", api_key="bench", base_url=llm.base_url, timeout=30, max_retries=0,
                       streaming=True, stream_usage=True)
    cpu = time.process_time()
    for i in range(calls):
        async for _ in model.astream(f"q{i}"):
            pass
    return plain, (time.process_time() - cpu) / calls * 1000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--chats", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.chats))
