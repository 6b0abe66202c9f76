"""The bot as a real OS process (`python -m bot.cli run`): kill -9 loses nothing, SIGTERM drains and exits 0.

The fakes run in the test process; the bot reaches them through TELEGRAM_API_BASE and OPENAI_BASE_URL, and keeps
its data (SQLite inbox and memory) in a temporary DATA_DIR.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.inbox import Inbox
from bot.storage import Database
from tests.conftest import API_KEY, WEBHOOK_SECRET, free_port
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram
from tests.waiting import until

pytestmark = pytest.mark.slow


class BotProcess:
    """`python -m bot.cli run [--webhook]` in a child process; its log lines are collected as they come."""

    def __init__(self, env: dict[str, str], cwd: Path, webhook: bool = False) -> None:
        self.env, self.cwd, self.webhook = env, cwd, webhook
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._seen = asyncio.Condition()

    async def start(self) -> BotProcess:
        args = ["-m", "bot.cli", "run"] + (["--webhook"] if self.webhook else [])
        self.proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=self.cwd, env=self.env,
                                                         stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.create_task(self._read())
        await self.wait_log("starting")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            async with self._seen:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._seen.notify_all()
        async with self._seen:
            self._seen.notify_all()

    async def wait_log(self, fragment: str, timeout: float = 120) -> str:
        async def seek() -> str:
            async with self._seen:
                while True:
                    found = next((line for line in self.lines if fragment in line), None)
                    if found is not None:
                        return found
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(f"the bot exited without logging {fragment!r}:\n" + self.log)
                    await self._seen.wait()
        return await asyncio.wait_for(seek(), timeout)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.wait()


@pytest.fixture
def bot_env(tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "WEBHOOK_"))}
    env.update(TELEGRAM_BOT_TOKEN=telegram.token, TELEGRAM_API_BASE=telegram.base_url, OPENAI_API_KEY=API_KEY,
               OPENAI_BASE_URL=llm.base_url, OPENAI_MODEL="scripted", OPENAI_TIMEOUT="60", OPENAI_MAX_RETRIES="0",
               DATA_DIR=str(tmp_path / "data"), DEFAULT_MODE="zero-shot", SEND_INTERVAL="0",
               STREAM_EDIT_INTERVAL="0.05", RATE_LIMIT_PER_MINUTE="0", SHUTDOWN_TIMEOUT="30", LOG_LEVEL="INFO")
    return env


@pytest.fixture
async def processes() -> AsyncIterator[list[BotProcess]]:
    started: list[BotProcess] = []
    yield started
    for proc in started:
        await proc.kill()


def gated_model(gate: asyncio.Event) -> Callable[[dict[str, Any]], Text]:
    def answer(body: dict[str, Any]) -> Text:
        return Text(f"answer to {body['messages'][-1]['content']}", gate=gate)
    return answer


async def inbox_counts(data_dir: Path) -> dict[str, int]:
    db = Database(f"sqlite+aiosqlite:///{(data_dir / 'adaptbot.db').as_posix()}")
    try:
        return await Inbox(db, "reader").counts()
    finally:
        await db.dispose()


async def test_kill_9_with_answers_in_flight_loses_none_and_doubles_none(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess]) -> None:
    gate = asyncio.Event()
    llm.default = gated_model(gate)
    first = await BotProcess(bot_env, tmp_path).start()
    processes.append(first)
    chats = range(1, 21)
    for chat in chats:
        telegram.user_says(chat, f"question {chat}")
    await until(lambda: len(llm.requests) == 20, timeout=120)  # 20 answers in flight, every one waiting for the model
    await first.kill()  # SIGKILL: no goodbye, leases still held, nothing stored
    assert all(telegram.texts(chat) == [] for chat in chats)
    gate.set()
    second = await BotProcess(bot_env, tmp_path).start()
    processes.append(second)
    await telegram.wait_for(lambda: all(telegram.texts(c) for c in chats), timeout=120)
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0
    for chat in chats:
        assert telegram.texts(chat) == [f"answer to question {chat}"]
    assert await inbox_counts(tmp_path / "data") == {"done": 20}
    # the dead process was recognised at once (its pid is gone), not after its leases ran out
    assert "took back 20 updates from 1 stopped processes" in second.log


async def test_sigterm_lets_answers_in_flight_finish_and_exits_0(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess]) -> None:
    gate = asyncio.Event()
    llm.default = gated_model(gate)
    proc = await BotProcess(bot_env, tmp_path).start()
    processes.append(proc)
    for chat in range(1, 6):
        telegram.user_says(chat, f"question {chat}")
    await until(lambda: len(llm.requests) == 5, timeout=120)
    proc.signal(signal.SIGTERM)
    await proc.wait_log("stopping: draining answers in flight")
    telegram.user_says(6, "sent while the bot shuts down")
    gate.set()
    assert await proc.wait() == 0
    for chat in range(1, 6):
        assert telegram.texts(chat) == [f"answer to question {chat}"]
    assert telegram.texts(6) == []  # not taken by a process that was stopping...
    again = await BotProcess(bot_env, tmp_path).start()
    processes.append(again)
    await telegram.wait_for(lambda: telegram.texts(6))  # ...so the next one answers it
    again.signal(signal.SIGTERM)
    assert await again.wait() == 0
    assert telegram.texts(6) == ["answer to sent while the bot shuts down"]
    assert all(len(telegram.texts(chat)) == 1 for chat in range(1, 6))
    assert await inbox_counts(tmp_path / "data") == {"done": 6}


async def test_sigterm_past_the_grace_period_gives_the_answer_to_the_next_run(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess]) -> None:
    gate = asyncio.Event()
    llm.default = gated_model(gate)
    proc = await BotProcess({**bot_env, "SHUTDOWN_TIMEOUT": "1"}, tmp_path).start()
    processes.append(proc)
    telegram.user_says(1, "a slow question")
    await until(lambda: len(llm.requests) == 1, timeout=120)
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0  # it did not wait for the model beyond SHUTDOWN_TIMEOUT
    assert telegram.texts(1) == []
    assert await inbox_counts(tmp_path / "data") == {"pending": 1}  # given back, not lost, not marked failed
    gate.set()
    again = await BotProcess(bot_env, tmp_path).start()
    processes.append(again)
    await telegram.wait_for(lambda: telegram.texts(1))
    again.signal(signal.SIGTERM)
    assert await again.wait() == 0
    assert telegram.texts(1) == ["answer to a slow question"]


async def test_two_webhook_processes_on_one_database(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess], database_url: str) -> None:
    """`adaptbot run --webhook` twice behind one (fake) load balancer; one is killed with answers in flight."""
    gate = asyncio.Event()
    gate.set()
    llm.default = gated_model(gate)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}/telegram" for port in ports]
    for name, port, url in zip("ab", ports, urls, strict=True):
        env = {**bot_env, "DATA_DIR": str(tmp_path / f"data-{name}"), "DATABASE_URL": database_url,
               "WEBHOOK_URL": url, "WEBHOOK_SECRET": WEBHOOK_SECRET, "WEBHOOK_HOST": "127.0.0.1",
               "WEBHOOK_PORT": str(port)}
        processes.append(await BotProcess(env, tmp_path, webhook=True).start())
        await processes[-1].wait_log("webhook: listening")
    a, b = processes
    telegram.webhook_targets = urls
    telegram.webhook_duplicate_rate = 0.3
    chats = range(1, 11)
    for i in range(2):
        for chat in chats:
            telegram.user_says(chat, f"c{chat} m{i}")
    await telegram.wait_for(lambda: all(len(telegram.texts(c)) == 2 for c in chats), timeout=120)
    gate.clear()  # the model goes slow; the next messages reach process a and wait there for it
    telegram.webhook_targets, asked = [urls[0]], len(llm.requests)
    for chat in chats:
        telegram.user_says(chat, f"c{chat} m2")
    await until(lambda: len(llm.requests) == asked + 10, timeout=120)
    await a.kill()  # answers in flight, leases held
    gate.set()
    telegram.webhook_targets = urls  # the balancer still sends to both; the dead one just fails
    for chat in chats:
        telegram.user_says(chat, f"c{chat} m3")
    await telegram.wait_for(lambda: all(len(telegram.texts(c)) >= 4 for c in chats), timeout=120)
    b.signal(signal.SIGTERM)
    assert await b.wait() == 0
    for chat in chats:
        assert telegram.texts(chat) == [f"answer to c{chat} m{i}" for i in range(4)]
    assert "updates from 1 stopped processes" in b.log  # b took over a's work as soon as a was gone


async def test_sigterm_stops_while_the_database_hangs_and_loses_nothing(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess]) -> None:
    proc = await BotProcess({**bot_env, "SHUTDOWN_TIMEOUT": "2"}, tmp_path).start()
    processes.append(proc)
    # another program takes the database's write lock and keeps it: every write of the bot hangs
    lock = sqlite3.connect(tmp_path / "data" / "adaptbot.db", timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        telegram.user_says(1, "sent while the database hangs")
        await telegram.wait_for(lambda: telegram.served)  # the bot fetched it and is trying to record it
        await asyncio.sleep(1.0)  # no event to wait on: the bot's write is waiting for a lock another program holds
        proc.signal(signal.SIGTERM)
        assert await proc.wait(timeout=60) == 0  # it stopped (SHUTDOWN_TIMEOUT 2 s + closing), not hung
    finally:
        lock.rollback()
        lock.close()
    assert "stopping: the database did not answer" in proc.log
    assert telegram.texts(1) == []
    again = await BotProcess(bot_env, tmp_path).start()  # never confirmed to Telegram, so it comes again
    processes.append(again)
    await telegram.wait_for(lambda: telegram.texts(1))
    again.signal(signal.SIGTERM)
    assert await again.wait() == 0
    assert telegram.texts(1) == ["echo: sent while the database hangs"]


async def test_kill_9_between_the_parts_of_an_answer_sends_only_the_missing_part(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess]) -> None:
    from bot.rendering import render

    answer = " ".join(f"w{i}" for i in range(1500))  # longer than one Telegram message: two parts
    parts = [chunk.text for chunk in render(answer)]
    assert len(parts) == 2
    llm.default = lambda body: Text(answer, chunk_size=500)
    first = await BotProcess(bot_env, tmp_path).start()
    processes.append(first)
    # the first part reaches the user; the second never gets through, and the bot dies while sending it
    telegram.swallow = lambda method, params: method == "sendMessage" and len(telegram.texts(1)) >= 1
    telegram.user_says(1, "a long answer, please")
    await telegram.wait_for(lambda: telegram.held, timeout=120)
    await first.kill()
    assert telegram.texts(1) == parts[:1]
    telegram.swallow = None
    second = await BotProcess(bot_env, tmp_path).start()
    processes.append(second)
    await telegram.wait_for(lambda: len(telegram.texts(1)) >= 2, timeout=120)
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0
    assert telegram.texts(1) == parts  # the first part once, then the missing one
    assert len(llm.requests) == 1  # the stored answer was delivered, not asked for again
    assert await inbox_counts(tmp_path / "data") == {"done": 1}


async def test_kill_9_after_delivery_before_the_inbox_marks_it_done_sends_no_second_copy(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI, bot_env: dict[str, str],
        processes: list[BotProcess], pg_url: str) -> None:
    """The narrowest window: the whole answer is delivered and the process dies before the inbox marks the update
    done. A row lock on the update (PostgreSQL) holds the bot right there, in its last step."""
    import asyncpg
    from sqlalchemy.engine import make_url

    gate = asyncio.Event()
    llm.default = gated_model(gate)
    env = {**bot_env, "DATABASE_URL": pg_url}
    first = await BotProcess(env, tmp_path).start()
    processes.append(first)
    telegram.user_says(1, "a question")
    await until(lambda: len(llm.requests) == 1, timeout=120)  # claimed, answering
    u = make_url(pg_url)
    conn, watch = [await asyncpg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                                         database=u.database) for _ in range(2)]
    try:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("SELECT 1 FROM inbox FOR UPDATE")  # the update's row: marking it done has to wait
        gate.set()
        await telegram.wait_for(lambda: telegram.texts(1))
        finishing = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     "AND query LIKE 'UPDATE inbox SET status%'")
        while not await watch.fetchval(finishing):  # delivered; now waiting to mark the update done
            await asyncio.sleep(0.02)
        await first.kill()
        await lock.rollback()
    finally:
        await conn.close()
        await watch.close()
    second = await BotProcess(env, tmp_path).start()
    processes.append(second)
    db = Database(pg_url)
    try:
        await until(lambda: _all_done(db, 1), timeout=120)
    finally:
        await db.dispose()
    second.signal(signal.SIGTERM)
    assert await second.wait() == 0
    assert telegram.texts(1) == ["answer to a question"]  # one copy
    assert len(llm.requests) == 1


async def _all_done(db: Database, n: int) -> bool:
    return await Inbox(db, "reader").counts() == {"done": n}


