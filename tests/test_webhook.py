"""Webhook mode: setWebhook with a secret token, refusal of strangers, record-then-200, duplicates answered once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import WEBHOOK_SECRET, WebhookBot
from tests.fakes.openai_server import ScriptedOpenAI, Text
from tests.fakes.telegram_server import FakeTelegram


def update(update_id: int, chat_id: int, text: str) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "text": text, "chat": {"id": chat_id, "type": "private", "first_name": "U"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "U", "language_code": "en"}}}


@pytest.fixture
async def hook(tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI):
    runner = WebhookBot(tmp_path, telegram, llm)
    yield runner
    await runner.stop()


async def inbox_counts(url: str) -> dict[str, int]:
    from bot.inbox import Inbox
    from bot.storage import Database

    db = Database(url)
    try:
        return await Inbox(db, "reader").counts()
    finally:
        await db.dispose()


async def post(url: str, body: object, secret: str | None = WEBHOOK_SECRET, raw: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=raw if raw is not None else json.dumps(body), headers=headers) as resp:
            return resp.status


async def test_webhook_is_registered_and_updates_are_answered(hook: WebhookBot, telegram: FakeTelegram) -> None:
    await hook.start(default_mode="zero-shot")
    assert telegram.webhook is not None
    assert telegram.webhook["url"] == hook.url and telegram.webhook["secret_token"] == WEBHOOK_SECRET
    assert {"message", "callback_query", "message_reaction"} <= set(telegram.webhook["allowed_updates"])
    telegram.user_says(1, "hello over a webhook")  # the fake now POSTs it to the bot, like Telegram
    await telegram.wait_for(lambda: telegram.texts(1) == ["echo: hello over a webhook"])
    assert telegram.calls_of("getUpdates") == [] and not telegram.calls_of("deleteWebhook")
    await hook.stop()
    assert await inbox_counts(hook.database_url) == {"done": 1}
    assert telegram.webhook is not None  # stopping one process leaves the webhook to the others


@pytest.mark.parametrize("secret", [pytest.param(None, id="missing"), pytest.param("wrong-secret", id="wrong"),
                                    pytest.param(WEBHOOK_SECRET + "x", id="longer")])
async def test_requests_without_the_secret_are_refused(hook: WebhookBot, telegram: FakeTelegram,
                                                       llm: ScriptedOpenAI, secret: str | None) -> None:
    await hook.start(default_mode="zero-shot")
    assert await post(hook.url, update(500, 9, "let me in"), secret=secret) == 401
    assert await hook.app.inbox.counts() == {}  # nothing recorded
    telegram.user_says(9, "a real one")  # a genuine delivery afterwards is still answered, alone
    await telegram.wait_for(lambda: telegram.texts(9) == ["echo: a real one"])
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["a real one"]


@pytest.mark.parametrize("raw", [pytest.param(b"not json", id="not-json"), pytest.param(b"[1, 2]", id="a-list"),
                                 pytest.param(b'{"update_id": "7"}', id="id-not-a-number"),
                                 pytest.param(b'{"message": {}}', id="no-id")])
async def test_malformed_bodies_get_400(hook: WebhookBot, raw: bytes) -> None:
    await hook.start(default_mode="zero-shot")
    assert await post(hook.url, None, raw=raw) == 400
    assert await hook.app.inbox.counts() == {}


async def test_duplicate_deliveries_are_answered_once(hook: WebhookBot, telegram: FakeTelegram,
                                                      llm: ScriptedOpenAI) -> None:
    await hook.start(default_mode="zero-shot")
    first = update(700, 3, "only once please")
    statuses = [await post(hook.url, first) for _ in range(3)]
    assert statuses == [200, 200, 200]  # Telegram must stop redelivering: every copy gets 200
    await post(hook.url, update(701, 3, "and the next"))
    await telegram.wait_for(lambda: len(telegram.texts(3)) == 2)
    await hook.stop()  # drains: whatever was left would be answered before this returns
    assert telegram.texts(3) == ["echo: only once please", "echo: and the next"]
    assert len(llm.requests) == 2


async def test_health_endpoint(hook: WebhookBot) -> None:
    await hook.start(default_mode="zero-shot")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{hook.port}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["ok"] is True


async def test_answers_in_flight_finish_when_the_webhook_stops(hook: WebhookBot, telegram: FakeTelegram,
                                                               llm: ScriptedOpenAI) -> None:
    await hook.start(default_mode="zero-shot")
    gate = asyncio.Event()
    llm.enqueue(Text("slow but complete", gate=gate))
    telegram.user_says(4, "take your time")
    await telegram.wait_for(lambda: len(llm.requests) == 1)
    app = hook.app
    stopping = asyncio.create_task(hook.stop())
    while not app.pump.closing:  # in-process state: no request to the fake tells us
        await asyncio.sleep(0.01)
    gate.set()
    await stopping
    assert telegram.texts(4) == ["slow but complete"]


# --- configuration: `adaptbot run --webhook` refuses to start without what it needs ------------------------------


@pytest.mark.parametrize(("env", "named"), [
    pytest.param({"WEBHOOK_URL": "https://bot.example.com/tg"}, "WEBHOOK_SECRET", id="no-secret"),
    pytest.param({"WEBHOOK_URL": "https://bot.example.com/tg", "WEBHOOK_SECRET": "has spaces!"}, "WEBHOOK_SECRET",
                 id="bad-secret"),
    pytest.param({"WEBHOOK_SECRET": WEBHOOK_SECRET}, "WEBHOOK_URL", id="no-url"),
])
async def test_webhook_settings_are_checked_at_start(tmp_path: Path, env: dict[str, str], named: str) -> None:
    base = {"TELEGRAM_BOT_TOKEN": "123456:TEST-token-abcdefghijklmnop", "OPENAI_API_KEY": "sk-test",
            "TELEGRAM_API_BASE": "http://127.0.0.1:9", "DATA_DIR": str(tmp_path / "data")}  # never reached
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--webhook", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **base, **env}, cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in lines[0], lines
    assert "has spaces" not in lines[0]  # a secret is never echoed back
