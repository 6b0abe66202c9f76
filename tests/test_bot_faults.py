"""Model faults reach the user as one short clear message, and secrets never reach the logs."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tests.conftest import API_KEY, BotRunner
from tests.fakes.openai_server import Fault, ScriptedOpenAI, Stall, Text
from tests.fakes.telegram_server import FakeTelegram


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param(Fault(status=429), "rate-limited", id="429"),
        pytest.param(Fault(status=500), "server failed (500)", id="500"),
        pytest.param(Fault(status=503), "server failed (503)", id="503"),
        pytest.param(Fault(status=401), "rejected our credentials", id="401"),
        pytest.param(Stall(), "did not answer in time", id="stall"),
    ],
)
async def test_model_fault_gives_a_clear_message(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                                 reply: object, expected: str) -> None:
    await bot.start(default_mode="zero-shot", openai_timeout=1.0)
    llm.enqueue(reply)  # type: ignore[arg-type]
    started = time.monotonic()
    telegram.user_says(1, "hello?")
    await telegram.wait_for(lambda: telegram.texts(1))
    assert len(telegram.texts(1)) == 1 and expected in telegram.texts(1)[0]
    assert time.monotonic() - started < 15  # bounded by the configured timeout, not hanging
    # the failed turn is not remembered as a real one: the next call carries no trace of it
    telegram.user_says(1, "again")
    await telegram.wait_for(lambda: "echo: again" in telegram.texts(1))
    assert [m["content"] for m in llm.requests[-1]["messages"]] == ["again"]


async def test_unreachable_model_server(bot: BotRunner, telegram: FakeTelegram) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await bot.start(default_mode="zero-shot", openai_base_url=f"http://127.0.0.1:{port}/v1")
    telegram.user_says(2, "anyone?")
    await telegram.wait_for(lambda: telegram.texts(2))
    assert "unreachable" in telegram.texts(2)[0]


async def test_stream_broken_half_way_is_not_stored_as_complete(bot: BotRunner, telegram: FakeTelegram,
                                                                llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot")
    llm.enqueue(Text("The beginning of a long answer that will never finish", chunk_size=5, break_after=20))
    telegram.user_says(3, "tell me")
    await telegram.wait_for(lambda: any("interrupted" in t or "failed" in t or "broke" in t
                                        for t in telegram.texts(3)))
    history = await bot.app.services.chat.history(3)
    assert history == []  # neither the question nor the partial answer count as a complete turn


async def test_answers_add_nothing_to_the_log_at_info(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    """The default log level shows what happens to the bot, not a line per HTTP request of the libraries (the
    OpenAI SDK's own HTTP client, httpx2, logs every request at INFO)."""
    from bot.logs import setup_logging
    from tests.conftest import make_settings

    names = ["", "httpx", "httpcore", "httpx2", "httpcore2", "openai", "aiogram.event", "aiohttp.access"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    setup_logging(make_settings(bot.tmp_path, telegram, llm, log_level="INFO"))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the fake servers', in this process
    try:
        await bot.start(default_mode="zero-shot")
        telegram.user_says(5, "warm")
        await telegram.wait_texts(5, 1)
        capfd.readouterr()
        for i in range(3):
            telegram.user_says(5, f"question {i}")
        await telegram.wait_texts(5, 4)
        err = capfd.readouterr().err
        await bot.stop()
    finally:
        for n, (level, handlers) in saved.items():  # logging is process-wide: leave it as we found it
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).handlers[:] = handlers
    assert len(llm.requests) == 4
    # lines at INFO (what the bot and its libraries report as routine); an earlier test's client collected now
    # may log its own loop's errors here, which is not this bot's doing
    assert [line for line in err.splitlines() if " INFO " in line] == []


async def test_secrets_never_reach_the_logs(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    from bot.logs import setup_logging
    from tests.conftest import make_settings

    settings = make_settings(bot.tmp_path, telegram, llm, log_level="DEBUG")
    names = ["", "httpx", "httpcore", "httpx2", "httpcore2", "openai", "aiogram.event"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers)) for n in names}
    setup_logging(settings)
    try:
        await bot.start(default_mode="zero-shot", openai_timeout=1.0)
        for reply in (Fault(status=401, body={"error": {"message": f"bad key {API_KEY}"}}), Fault(status=500),
                      "fine"):
            llm.enqueue(reply)
            before = len(telegram.texts(4))
            telegram.user_says(4, "x")
            await telegram.wait_for(lambda b=before: len(telegram.texts(4)) > b)
        await bot.stop()
    finally:
        for n, (level, handlers) in saved.items():  # logging is process-wide: leave it as we found it
            logging.getLogger(n).setLevel(level)
            logging.getLogger(n).handlers[:] = handlers
    err = capfd.readouterr().err
    assert "Update id=" in err or "bot @adapt_test_bot" in err  # logging did run at debug level
    assert API_KEY not in err and telegram.token not in err
    assert llm.headers[0]["Authorization"] == f"Bearer {API_KEY}"  # the key was really in use
