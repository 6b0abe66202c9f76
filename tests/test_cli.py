"""The `adaptbot` command: one-line config errors with exit code 2, and the terminal chat on the same brain."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import API_KEY, BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram


async def run_cli(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        pytest.param({}, ["run"], "TELEGRAM_BOT_TOKEN", id="missing-token"),
        pytest.param({"TELEGRAM_BOT_TOKEN": "nonsense"}, ["run"], "TELEGRAM_BOT_TOKEN", id="bad-token"),
        pytest.param({"ADMIN_IDS": "12,abc"}, ["chat"], "ADMIN_IDS", id="bad-admin-ids"),
        pytest.param({"OPENAI_TIMEOUT": "-1"}, ["chat"], "OPENAI_TIMEOUT", id="negative-timeout"),
        pytest.param({"DEFAULT_MODE": "prompt gpt-9"}, ["chat"], "DEFAULT_MODE", id="unknown-default-mode"),
        pytest.param({"LOCAL_MODEL_REPO": "someone/model-GGUF"}, ["chat"], "LOCAL_MODEL_FILE", id="repo-without-file"),
        pytest.param({"TELEGRAM_API_BASE": "ftp://x"}, ["chat"], "TELEGRAM_API_BASE", id="bad-api-base"),
        pytest.param({"PROMPTS_PATH": "/nonexistent/prompts.yaml"}, ["chat"], "PROMPTS_PATH", id="missing-prompts"),
        pytest.param({"DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1:9/x"}, ["chat"], "DATABASE_URL",
                     id="unreachable-db"),
    ],
)
async def test_bad_config_is_one_clear_line(tmp_path: Path, env: dict[str, str], args: list[str],
                                            named: str) -> None:
    code, _out, err = await run_cli(args, {"DATA_DIR": str(tmp_path / "d"), **env})
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "WARNING" not in line]
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in err, err


async def test_terminal_chat_shares_memory_and_modes_with_telegram(bot: BotRunner, telegram: FakeTelegram,
                                                                   llm: ScriptedOpenAI, tmp_path: Path) -> None:
    await bot.start(default_mode="zero-shot")
    telegram.user_says(5, "my favourite colour is teal")
    await telegram.wait_texts(5, 1)
    await bot.stop()
    llm.enqueue("You said teal.")
    env = {"DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": llm.base_url,
           "OPENAI_TIMEOUT": "5", "DEFAULT_MODE": "zero-shot"}
    script = "what colour?\n/mode prompt\n/mode nonsense\nhi\n/reset\n/quit\n"
    code, out, err = await run_cli(["chat", "--chat-id", "5"], env, script)
    assert code == 0, err
    assert "You said teal." in out
    assert "Mode: prompt · cloud" in out and "Unknown name “nonsense”" in out
    assert "Memory of this chat cleared (6 messages)" in out
    assert [m["content"] for m in llm.requests[1]["messages"]][-3:] == [
        "my favourite colour is teal", "echo: my favourite colour is teal", "what colour?"]
    assert llm.requests[2]["messages"][0]["role"] == "system"  # `/mode prompt` took effect
    assert API_KEY not in out + err


async def test_chat_once_answers_one_message_and_exits(llm: ScriptedOpenAI, tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": llm.base_url,
           "OPENAI_TIMEOUT": "5", "DEFAULT_MODE": "zero-shot"}
    code, out, err = await run_cli(["chat", "--chat-id", "9", "--once", "/steps foo"], env)
    assert code == 0, err
    assert out.strip() == "Usage: /steps on or /steps off (now: off)."  # not "off": the same as in Telegram
    llm.enqueue("Forty-two.")
    code, out, err = await run_cli(["chat", "--chat-id", "9", "--once", "what is six times seven?"], env)
    assert (code, out.strip()) == (0, "Forty-two."), err
    code, out, _ = await run_cli(["chat", "--chat-id", "9", "--user", "--once", "/prompt"], env)
    assert (code, out.strip()) == (0, "Sorry, this command is for the bot's admins only.")


async def test_terminal_chat_cuts_a_loop_and_has_retry_lang_and_guards(llm: ScriptedOpenAI, tmp_path: Path) -> None:
    llm.enqueue("Here is the plan. " + "We keep going round and round the same idea. " * 100,
                "Write the tests on Monday, ship on Friday.")
    env = {"DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": llm.base_url,
           "OPENAI_TIMEOUT": "5", "DEFAULT_MODE": "zero-shot"}
    script = "What is the plan for this week?\n/retry\n/guards loops off\n/lang ru\n/guards\n/lang xx\n/quit\n"
    code, out, err = await run_cli(["chat", "--chat-id", "5"], env, script)
    assert code == 0, err
    assert "The model started repeating itself; stopped. /retry asks again." in out
    assert "Write the tests on Monday, ship on Friday." in out
    assert [m["content"] for m in llm.requests[1]["messages"]] == ["What is the plan for this week?"]
    assert "Guard loops: off." in out and "Answer language: ru." in out
    assert "loops off, language on, numbers on; answer language: ru." in out
    assert "zero-shot · cloud: loops.cut × 1" in out
    assert "Usage: /lang ru, /lang en or /lang auto." in out
