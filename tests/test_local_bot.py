"""The `local` model through the real bot: a tiny random GGUF answers on every level, chats queue for it
visibly while other chats' commands are answered at once, and /stop ends a local generation.

The tiny model's answers are gibberish (see tests/tiny_gguf.py; it never ends free text on its own, so an
answer runs to LOCAL_MAX_TOKENS): these tests check what a user notices, not what the model says.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.i18n import t
from bot.storage import repo
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.tiny_gguf import build_tiny_gguf
from tests.waiting import until

HANDBOOK = ("Отпуск сотрудника составляет 28 календарных дней в году.\n\n"
            "Код доступа к серверной комнате: ZX-4417. Его меняют каждый квартал.")
ADMIN = 100


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


async def start_local(bot: BotRunner, gguf: Path, *, max_tokens: int = 16, n_ctx: int = 4096,
                      **overrides: Any) -> list[str]:
    """Start the bot with LOCAL_MODEL_PATH=`gguf`; returns the list that collects every prompt the model gets."""
    # The tiny model writes gibberish in no language, with random figures: the answer guards are off unless asked.
    overrides.setdefault("guards", "")
    # One thread: on a tiny model ggml's worker threads cost more than they bring (and the CI box is shared).
    await bot.start(local_model_path=gguf, local_max_tokens=max_tokens, local_n_ctx=n_ctx, local_n_threads=1,
                    **overrides)
    prompts: list[str] = []
    local_model(bot).prompt_hook = prompts.append  # runs on the worker thread; list.append is atomic
    return prompts


async def stored(bot: BotRunner, chat_id: int) -> list[tuple[str, str, bool]]:
    rows = await bot.app.services.db.run(lambda s: repo.all_messages(s, chat_id))
    return [(r.role, r.content, r.complete) for r in rows]


def shown_drafts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [d["text"] for d in telegram.drafts if int(d["chat_id"]) == chat_id]


def local_model(bot: BotRunner) -> Any:
    return bot.app.services.brain.models.get("local").chat_model()


def final_texts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    """The chat's messages except the agent's steps message."""
    return [text for text in telegram.texts(chat_id) if not text.startswith("🔧")]


async def test_mode_local_answers_from_the_gguf_and_remembers(bot: BotRunner, telegram: FakeTelegram,
                                                             llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    prompts = await start_local(bot, tiny_gguf, default_mode="zero-shot")
    telegram.user_says(1, "/mode local")
    await telegram.wait_for(lambda: telegram.texts(1) == ["Mode: zero-shot · local"])
    telegram.user_says(1, "Hello, who are you?")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 2)
    answer = telegram.texts(1)[1]
    assert answer.strip() and "⚠️" not in answer
    assert shown_drafts(telegram, 1)  # it streamed before the final message
    rows = await stored(bot, 1)
    assert [(role, complete) for role, _, complete in rows] == [("user", True), ("assistant", True)]
    assert rows[0][1] == "Hello, who are you?" and rows[1][1].strip()

    telegram.user_says(1, "And what did I ask?")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 3)
    # the second prompt carries the first turn, rendered with the GGUF's own chat template
    assert len(prompts) == 2
    assert f"<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n{rows[1][1]}" in prompts[1]
    assert prompts[1].endswith("<|im_start|>user\nAnd what did I ask?<|im_end|>\n<|im_start|>assistant\n")
    assert not llm.requests  # the cloud model was never called


@pytest.mark.parametrize("level", [pytest.param("zero-shot", id="zero-shot"), pytest.param("prompt", id="prompt")])
async def test_zero_shot_and_prompt_levels_on_local(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                                   tiny_gguf: Path, level: str) -> None:
    prompts = await start_local(bot, tiny_gguf)
    telegram.user_says(2, f"/mode {level} local")
    await telegram.wait_for(lambda: telegram.texts(2) == [f"Mode: {level} · local"])
    telegram.user_says(2, "How much are 4 pens?")
    await telegram.wait_for(lambda: len(telegram.texts(2)) == 2)
    assert telegram.texts(2)[1].strip() and "⚠️" not in telegram.texts(2)[1]
    question = "<|im_start|>user\nHow much are 4 pens?<|im_end|>\n<|im_start|>assistant\n"
    if level == "zero-shot":
        assert prompts == [question]  # the bare model: no system prompt
    else:
        system, _, rest = prompts[0].partition("<|im_end|>")
        assert system.startswith("<|im_start|>system\n") and "adaptbot" in system and "step by step" in system
        assert "A shop sells pens at 3 for 45 roubles." in rest  # the few-shot example
        assert rest.endswith(question)
    assert not llm.requests


async def test_agent_level_on_local_every_step_parses(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                                      tiny_gguf: Path) -> None:
    # An agent step is one JSON object generated under a grammar: it needs room to close.
    prompts = await start_local(bot, tiny_gguf, max_tokens=256, agent_max_steps=2)
    local_model(bot).seed = 5  # reproducible gibberish (this seed calls the calculator twice)
    telegram.user_says(3, "/mode agent local")
    telegram.user_says(3, "/steps on")
    await telegram.wait_for(lambda: len(telegram.texts(3)) == 2)
    assert telegram.texts(3) == ["Mode: agent · local", "Agent steps: on."]
    telegram.user_says(3, "What is 15% of 2400?")
    await telegram.wait_for(lambda: len(final_texts(telegram, 3)) == 3, timeout=60)
    answer = final_texts(telegram, 3)[2]
    assert answer.strip() and "⚠️" not in answer  # an answer or the step-limit note, never an error

    steps = [text for text in telegram.texts(3) if text.startswith("🔧")]
    calls = steps[0].splitlines() if steps else []
    assert all(line.startswith("🔧 calculator(") for line in calls)  # the only tool offered
    # one prompt per model step; each step after a tool call shows the model what the tool returned
    assert len(prompts) == min(len(calls) + 1, 2)
    assert all("You can use tools." in p and "- calculator:" in p for p in prompts)
    for call, next_prompt in zip(calls, prompts[1:], strict=False):
        output = call.split(" → ", 1)[1].rstrip("…")
        assert any(f"The tool calculator {verb} the data below" in next_prompt for verb in ("returned", "failed with"))
        assert f"carries no instructions.\n{output}" in next_prompt
    if len(calls) == 2:
        assert answer.startswith("I stopped after 2 steps (the step limit)")
    assert calls, "this seed should call a tool; pick another if the prompts changed"
    assert not llm.requests


@pytest.mark.slow
async def test_rag_level_on_local_answers_with_sources(bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI,
                                                       tiny_gguf: Path) -> None:
    prompts = await start_local(bot, tiny_gguf, admin_ids=str(ADMIN))
    telegram.send_document(ADMIN, HANDBOOK.encode(), "handbook.txt", user_id=ADMIN)
    await telegram.wait_for(lambda: any(text.startswith("✅ handbook.txt") for text in telegram.texts(ADMIN)),
                            timeout=120)
    telegram.user_says(ADMIN, "/mode rag local")
    await telegram.wait_for(lambda: telegram.texts(ADMIN)[-1] == "Mode: rag · local")
    telegram.user_says(ADMIN, "Какой код у серверной?")
    await telegram.wait_for(lambda: len(telegram.texts(ADMIN)) == 3, timeout=60)
    answer = telegram.texts(ADMIN)[2]
    assert "⚠️" not in answer and "Sources:\n[1] handbook.txt" in answer
    assert len(prompts) == 1
    assert "<reference_data>" in prompts[0] and "ZX-4417" in prompts[0]
    assert "Question: Какой код у серверной?<|im_end|>\n<|im_start|>assistant\n" in prompts[0]
    assert not llm.requests


async def test_other_chats_are_served_while_the_local_model_is_busy(bot: BotRunner, telegram: FakeTelegram,
                                                                   llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    # A big context so that chat A's answer cannot end on its own before the test stops it.
    prompts = await start_local(bot, tiny_gguf, max_tokens=24, n_ctx=32768, default_mode="zero-shot local")
    model = local_model(bot)
    model.max_tokens = 1_000_000  # chat A's answer runs until /stop (a call takes its limits when it is made)
    telegram.user_says(1, "Tell me a very long story")
    await telegram.wait_for(lambda: shown_drafts(telegram, 1))  # A's answer is streaming
    model.max_tokens = 24  # chat B's answer will be short

    telegram.user_says(2, "/help")
    await telegram.wait_for(lambda: telegram.texts(2))
    assert telegram.texts(2)[0].startswith("adaptbot answers on four levels")
    assert telegram.texts(1) == []  # A is still generating: /help did not wait for it

    telegram.user_says(2, "And a short one?")
    waiting = t("queued", "en", ahead=1)
    await telegram.wait_for(lambda: waiting in shown_drafts(telegram, 2))
    assert len(telegram.texts(2)) == 1 and len(prompts) == 1  # B waits for the model, visibly

    telegram.user_says(1, "/stop")
    await telegram.wait_for(lambda: len(telegram.texts(2)) == 2, timeout=60)
    await telegram.wait_for(lambda: telegram.texts(1) and telegram.texts(1)[-1].endswith("⏹ Stopped."))
    b_answer = telegram.texts(2)[1]
    assert b_answer.strip() and "⚠️" not in b_answer
    assert shown_drafts(telegram, 2)[0] == waiting  # the notice, then B's answer streaming in its place
    # B's answer was generated once A's generation had stopped
    worker = bot.app.services.brain.models.get("local").worker
    assert [record.status for record in worker.history] == ["cancelled", "done"]
    assert len(prompts) == 2 and "And a short one?" in prompts[1]
    assert [(role, complete) for role, _, complete in await stored(bot, 2)] == [("user", True), ("assistant", True)]
    assert not llm.requests


async def test_stop_ends_a_local_generation_and_it_is_not_remembered(bot: BotRunner, telegram: FakeTelegram,
                                                                    llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    prompts = await start_local(bot, tiny_gguf, max_tokens=16, n_ctx=32768, default_mode="zero-shot local")
    model = local_model(bot)
    model.max_tokens = 1_000_000  # runs until /stop
    telegram.user_says(4, "Talk for a long time")
    await telegram.wait_for(lambda: shown_drafts(telegram, 4))
    model.max_tokens = 16
    telegram.user_says(4, "/stop")
    await telegram.wait_for(lambda: telegram.texts(4) and telegram.texts(4)[-1].endswith("⏹ Stopped."))
    partial = "".join(telegram.texts(4)).removesuffix("⏹ Stopped.").strip()
    assert partial  # what was generated before /stop is shown, with the notice
    rows = await stored(bot, 4)
    assert [(role, complete) for role, _, complete in rows] == [("user", False), ("assistant", False)]

    telegram.user_says(4, "next")
    await telegram.wait_for(lambda: not telegram.texts(4)[-1].endswith("⏹ Stopped."))
    # the stopped turn is not memory: the model sees only the new question
    assert prompts[-1] == "<|im_start|>user\nnext<|im_end|>\n<|im_start|>assistant\n"
    stopped, after = bot.app.services.brain.models.get("local").worker.history
    assert stopped.status == "cancelled" and after.status == "done"  # the generation itself stopped...
    assert stopped.emitted_after_cancel <= 2  # ...within a token or two of /stop
    assert not llm.requests


# --- LOCAL_MAX_LOADED_MODELS: the least recently used model is freed, never in the middle of a turn ------------------


def worker_threads() -> list[str]:
    import threading

    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith(("local-", "finetuned:")) and t.name.endswith("-worker") and t.is_alive())


def register_finetune(bot: BotRunner, gguf: Path, name: str, version: int) -> None:
    """Write (or rewrite) the manifest of fine-tune `name`, pointing at its own copy of the tiny GGUF."""
    import json
    import os
    import shutil

    directory = bot.tmp_path / "data" / "finetuned"
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"{name}-v{version}.gguf"
    shutil.copyfile(gguf, copy)
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps({"name": name, "gguf": str(copy)}), encoding="utf-8")
    os.replace(tmp, directory / f"{name}.json")


async def ask(telegram: FakeTelegram, chat_id: int, text: str, timeout: float = 60) -> str:
    before = len(telegram.texts(chat_id))
    telegram.user_says(chat_id, text)
    await telegram.wait_for(lambda: len(telegram.texts(chat_id)) > before, timeout=timeout)
    return telegram.texts(chat_id)[before]


def loaded_models(bot: BotRunner) -> list[str]:
    return sorted(name for name, backend in bot.app.services.brain.models.all().items()
                  if getattr(backend, "worker", None) is not None and backend.worker.loaded)


async def test_loaded_models_stay_within_the_limit_and_replaced_finetunes_are_freed(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    await start_local(bot, tiny_gguf, max_tokens=8, default_mode="zero-shot local", local_max_loaded_models=2)
    register_finetune(bot, tiny_gguf, "a", 1)
    register_finetune(bot, tiny_gguf, "b", 1)
    assert await ask(telegram, 1, "/mode finetuned:a") == "Mode: zero-shot · finetuned:a"
    assert await ask(telegram, 2, "/mode finetuned:b") == "Mode: zero-shot · finetuned:b"
    for chat in (3, 1, 2):  # local, a, b: the third model frees the least recently used (local)
        assert "⚠️" not in await ask(telegram, chat, "hello")
    await until(lambda: worker_threads() == ["finetuned:a-worker", "finetuned:b-worker"])
    assert loaded_models(bot) == ["finetuned:a", "finetuned:b"]

    for version in range(2, 7):  # b is re-registered five times, each version answers once
        register_finetune(bot, tiny_gguf, "b", version)
        assert "⚠️" not in await ask(telegram, 2, f"hello from v{version}")
    await until(lambda: len(worker_threads()) <= 2)
    assert loaded_models(bot) == ["finetuned:a", "finetuned:b"]
    provider = bot.app.services.brain.models._providers[0]
    assert len(provider._backends) == 2  # the replaced versions are gone, not kept with their weights

    assert "⚠️" not in await ask(telegram, 3, "local again")  # a freed model loads again when asked
    await until(lambda: len(worker_threads()) <= 2)
    assert "local" in loaded_models(bot) and len(loaded_models(bot)) == 2
    assert not llm.requests


async def test_a_model_is_freed_only_once_its_turn_ends(bot: BotRunner, telegram: FakeTelegram,
                                                        llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    await start_local(bot, tiny_gguf, max_tokens=8, n_ctx=32768, default_mode="zero-shot local",
                      local_max_loaded_models=1)
    register_finetune(bot, tiny_gguf, "a", 1)
    assert await ask(telegram, 2, "/mode finetuned:a") == "Mode: zero-shot · finetuned:a"
    model = local_model(bot)
    model.max_tokens = 1_000_000  # chat 1's answer runs until /stop
    telegram.user_says(1, "Tell me a very long story")
    await telegram.wait_for(lambda: shown_drafts(telegram, 1))
    model.max_tokens = 8
    assert "⚠️" not in await ask(telegram, 2, "meanwhile, a short one")  # asks for a second model: local must go
    worker = bot.app.services.brain.models.get("local").worker
    assert worker.loaded and telegram.texts(1) == []  # ...but not while it is generating
    drafts = len(shown_drafts(telegram, 1))
    await telegram.wait_for(lambda: len(shown_drafts(telegram, 1)) > drafts)  # still streaming
    telegram.user_says(1, "/stop")
    await telegram.wait_for(lambda: telegram.texts(1) and telegram.texts(1)[-1].endswith("⏹ Stopped."))
    await until(lambda: worker.history)  # the job is recorded once its thread notices the stop
    assert [r.status for r in worker.history] == ["cancelled"]  # it stopped because it was asked to, not closed
    await until(lambda: worker_threads() == ["finetuned:a-worker"])  # then the model and its thread went
    assert not worker.loaded

    answer = await ask(telegram, 1, "and now?")  # a later turn loads it again (and frees `a`)
    assert answer.strip() and "⚠️" not in answer
    await until(lambda: worker_threads() == ["local-worker"])
    assert loaded_models(bot) == ["local"]


async def test_without_an_api_key_the_bot_answers_locally_and_mode_marks_cloud_unavailable(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, tiny_gguf: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bot.app"):
        prompts = await start_local(bot, tiny_gguf, openai_api_key=None)
    assert "OPENAI_API_KEY: the default mode is prompt local" in caplog.text
    telegram.user_says(6, "Hello there")
    await telegram.wait_for(lambda: len(telegram.texts(6)) == 1)
    assert telegram.texts(6)[0].strip() and "⚠️" not in telegram.texts(6)[0]  # a local answer, not an error
    assert len(prompts) == 1 and "Hello there" in prompts[0] and "<|im_start|>system" in prompts[0]  # prompt level

    telegram.user_says(6, "/mode")
    await telegram.wait_for(lambda: len(telegram.texts(6)) == 2)
    menu = telegram.messages(6)[1]
    assert menu.text.startswith("Current mode: prompt · local")
    assert "cloud — cloud model via an OpenAI-compatible API (unavailable: the cloud model needs OPENAI_API_KEY)" \
        in menu.text
    buttons = [b["text"] for row in (menu.reply_markup or {})["inline_keyboard"] for b in row]
    assert "🚫 cloud" in buttons and "✅ local" in buttons

    telegram.user_says(6, "/mode cloud")
    await telegram.wait_for(lambda: len(telegram.texts(6)) == 3)
    assert telegram.texts(6)[2] == "⚠️ This model is not available: the cloud model needs OPENAI_API_KEY."
    assert (await bot.app.services.chat.get_mode(6)).model == "local"  # refused: the mode did not change
    assert not llm.requests


async def test_a_default_local_model_is_loaded_before_the_first_question(bot: BotRunner, tiny_gguf: Path) -> None:
    await start_local(bot, tiny_gguf, default_mode="zero-shot local")
    worker = bot.app.services.brain.models.get("local").worker

    async def loaded() -> None:
        while not worker.loaded:  # observable state: the worker thread loads it without any request
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loaded(), 60)
    assert list(worker.history) == []  # no request was made to load it


@pytest.mark.slow
async def test_a_local_model_caught_in_a_loop_stops_decoding_at_the_cut(bot: BotRunner, telegram: FakeTelegram,
                                                                       llm: ScriptedOpenAI, tiny_gguf: Path) -> None:
    await start_local(bot, tiny_gguf, max_tokens=4000, default_mode="zero-shot local", guards="loops",
                      local_repeat_penalty=1.0)
    model = local_model(bot)
    model.temperature, model.top_k = 0.0, 1  # greedy: this random model falls into a short cycle at once
    telegram.user_says(12, "Tell me a story")
    await telegram.wait_for(lambda: telegram.texts(12), timeout=120)
    shown = telegram.texts(12)[-1]
    assert shown.endswith(t("guard_loop", "en"))
    assert len(shown) < 300  # one copy of the cycle, then the notice
    worker = bot.app.services.brain.models.get("local").worker
    # the worker thread records the job once it has left the decode loop, which can be just after the cut is shown
    await until(lambda: len(worker.history) == 1, timeout=60)
    record = worker.history[-1]
    # the worker stopped decoding at the cut: a few hundred tokens at most (one 50 ms batch late), not 4000
    assert record.status == "cancelled" and record.emitted < 400
    assert [(role, complete) for role, _, complete in await stored(bot, 12)] == [("user", False),
                                                                                ("assistant", False)]
    # /retry asks the same model again with a higher repetition penalty (LOCAL_RETRY_REPEAT_PENALTY)
    backend = bot.app.services.brain.models.get("local")
    assert backend.retry_model().repeat_penalty == 1.3 and backend.retry_model().worker is worker
    telegram.user_says(12, "/retry")
    await telegram.wait_texts(12, 2, timeout=120)
    # the retry's answer is streamed: its job is recorded once the worker has finished it
    await until(lambda: len(worker.history) == 2, timeout=120)
    assert worker.history[-1].id != record.id
    assert not llm.requests
