"""Start-up: `adaptbot run` polls before anything heavy is imported, and a cloud-only conversation never loads the
local model's, the knowledge base's or the agent runtime's libraries.

The bot runs as a real process (`bot.cli.main(["run"])`) against the fakes in this process; a wrapper around the
polling loop prints the modules the process holds when polling starts, and again when it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.slow

# Libraries only a local model, the knowledge base or the agent level needs (and their heaviest dependencies).
# (httpx: only the web search uses it; with it come its command-line tool's rich, click and pygments, 5 MB.)
HEAVY = ("torch", "transformers", "sentence_transformers", "chromadb", "llama_cpp", "onnxruntime", "numpy",
         "langgraph", "knowledge", "httpx", "rich")

WRAPPER = """
import atexit, gc, json, sys
import bot.pump

def modules(when):
    print(when, json.dumps(sorted({name.split(".")[0] for name in sys.modules})), flush=True)

def built_types():
    import aiogram.types
    classes = [getattr(aiogram.types, name) for name in aiogram.types.__all__]
    built = [c.__name__ for c in classes if getattr(c, "__pydantic_complete__", False)]
    print("BUILT", json.dumps({"built": built, "of": len(classes)}), flush=True)

real_poll = bot.pump.poll

async def poll(*args, **kwargs):
    modules("POLLING")
    built_types()
    return await real_poll(*args, **kwargs)

bot.pump.poll = poll
atexit.register(modules, "EXIT")
atexit.register(lambda: print("FROZEN", gc.get_freeze_count(), flush=True))
from bot.cli import main
raise SystemExit(main(["run"]))
"""


async def test_the_bot_polls_without_heavy_libraries_and_a_cloud_chat_never_loads_them(
        tmp_path: Path, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "WEBHOOK_"))}
    env.update(TELEGRAM_BOT_TOKEN=telegram.token, TELEGRAM_API_BASE=telegram.base_url, OPENAI_API_KEY=API_KEY,
               OPENAI_BASE_URL=llm.base_url, OPENAI_MODEL="scripted", DATA_DIR=str(tmp_path / "data"),
               DEFAULT_MODE="prompt cloud", SEND_INTERVAL="0", LOG_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRAPPER, cwd=tmp_path, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        loaded: dict[str, Any] = {}

        async def read() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                when, _, names = line.decode().partition(" ")
                if when in ("POLLING", "BUILT", "EXIT", "FROZEN"):
                    loaded[when] = json.loads(names)

        reader = asyncio.create_task(read())
        await telegram.wait_for(lambda: "POLLING" in loaded or reader.done(), timeout=120)
        assert "POLLING" in loaded, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        assert [name for name in HEAVY if name in loaded["POLLING"]] == []
        # nor LangChain (0.8 s of imports, most of them langsmith's): the warm-up loads it once the bot polls
        assert [name for name in ("langchain_core", "langsmith") if name in loaded["POLLING"]] == []
        # aiogram's ~450 Telegram types are not built at import (2 s, 90 MB): by the first poll only the few that
        # start-up used (the bot's own User, its commands, ...)
        assert loaded["BUILT"]["of"] > 400 and len(loaded["BUILT"]["built"]) < 10, loaded["BUILT"]

        telegram.user_says(7, "hello there")  # a cloud-only conversation: the prompt level on the cloud model
        assert (await telegram.wait_texts(7, 1, timeout=60)) == ["echo: hello there"]
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await reader
        assert [name for name in HEAVY if name in loaded["EXIT"]] == []
        assert "langchain_openai" in loaded["EXIT"]  # the cloud client itself did load: the check sees imports
        # once warmed up, the process froze what start-up built: full collections no longer walk it (bench_gc.py)
        assert loaded["FROZEN"] > 100_000  # type: ignore[operator]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


BUILD_ALL = """
import json, sys
if sys.argv[1] == "lazy":
    import bot  # what the bot process does first
import aiogram.methods, aiogram.types
from aiogram.methods.base import Response


def first_use():
    # first use, before anything is built, from code with locals named like aiogram's types: they must not count
    Chat = User = ReplyParameters = datetime = int
    return (aiogram.types.Update.model_validate(json.loads(sys.argv[2])),
            aiogram.methods.SendMessage.model_validate(json.loads(sys.argv[3])))


update, send = first_use()
failed = []
for module in (aiogram.types, aiogram.methods):
    for name in module.__all__:
        cls = getattr(module, name)
        if hasattr(cls, "model_rebuild"):
            try:
                cls.model_rebuild()
                assert cls.__pydantic_complete__
            except Exception as exc:
                failed.append(f"{name}: {exc}")
def refused(cls, data):
    try:
        cls.model_validate(data)
    except Exception as exc:
        return exc.errors()
    return []

print(json.dumps({
    "failed": failed,
    "schema": Response[list[aiogram.types.Update]].model_json_schema(),
    "method": repr(send.model_dump()),
    "refused": [error["type"] for error in refused(aiogram.methods.EditMessageText, {"text": 5, "reply_markup": 1})],
    "update": update.model_dump(mode="json", exclude_none=True),
    "reply": update.message.reply_to_message.text,
}))
"""


async def test_aiogram_types_built_on_first_use_are_the_types_aiogram_builds_at_import() -> None:
    """bot/lazy_types.py changes when aiogram's types are built, not what they are: every type and method still
    builds, and the schemas and a parsed update are exactly those of a plain `import aiogram`."""
    update = {"update_id": 5, "message": {
        "message_id": 2, "date": 1700000000, "chat": {"id": -100, "type": "supergroup", "title": "t"},
        "from": {"id": 7, "is_bot": False, "first_name": "Ann"}, "text": "/ask@bot hi",
        "entities": [{"type": "bot_command", "offset": 0, "length": 8}],
        "reply_to_message": {"message_id": 1, "date": 1700000000, "chat": {"id": -100, "type": "supergroup"},
                             "text": "before", "reply_markup": {"inline_keyboard": [[{"text": "👍",
                                                                                         "callback_data": "v:1"}]]}},
        "forward_origin": {"type": "user", "date": 1700000000,
                           "sender_user": {"id": 8, "is_bot": True, "first_name": "B"}}}}
    send = {"chat_id": -100, "text": "hi", "entities": [{"type": "bold", "offset": 0, "length": 2}],
            "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "b"}]]},
            "reply_parameters": {"message_id": 1}}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    results = {}
    for mode in ("lazy", "eager"):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BUILD_ALL, mode, json.dumps(update),
                                                    json.dumps(send),
                                                    env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode()
        results[mode] = json.loads(out)
    lazy, eager = results["lazy"], results["eager"]
    assert lazy["failed"] == [] and eager["failed"] == []
    assert lazy["reply"] == "before" and "callback_data" in lazy["method"] and lazy["refused"]
    assert lazy == eager
