"""The knowledge base through the real bot: admin uploads, /kb commands, cited answers in `rag` mode."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.commands.kb import pack_lines
from knowledge import samples
from tests.conftest import BotRunner, free_port
from tests.fakes.openai_server import ScriptedOpenAI, ToolCalls
from tests.fakes.telegram_server import FakeTelegram, FaultPlan

ADMIN = 100
HANDBOOK = ("Отпуск сотрудника составляет 28 календарных дней в году.\n\n"
            "Код доступа к серверной комнате: ZX-4417. Его меняют каждый квартал.\n\n"
            "The office opens at 9:00 and closes at 18:00 on weekdays.")
MANUAL = ["Pump manual, cover page.", "Safety: wear gloves and goggles.",
          "The QP-7310 pump is rated for 16 bar; service it every 500 hours."]


def final_status(telegram: FakeTelegram, chat: int) -> str:
    return telegram.texts(chat)[-1]


def status_history(telegram: FakeTelegram, chat: int) -> list[str]:
    """Every text the last message of `chat` showed: the one it was sent with, then each edit."""
    message = telegram.messages(chat)[-1]
    sent = [p["text"] for p in telegram.calls_of("sendMessage") if p["chat_id"] == chat]
    edits = [p["text"] for p in telegram.calls_of("editMessageText")
             if p["chat_id"] == chat and p["message_id"] == message.message_id]
    first = next(text for text in reversed(sent) if text.startswith("⏳"))
    return [first, *edits]


async def upload(telegram: FakeTelegram, content: bytes, name: str, *, chat: int = ADMIN, user: int = ADMIN,
                 caption: str | None = None, **kwargs: object) -> str:
    before = len(telegram.texts(chat))
    telegram.send_document(chat, content, name, user_id=user, caption=caption, **kwargs)  # type: ignore[arg-type]
    await telegram.wait_for(lambda: len(telegram.texts(chat)) > before and
                            telegram.texts(chat)[-1][:1] in "✅❌⚠S", timeout=120)
    return final_status(telegram, chat)


async def command(telegram: FakeTelegram, text: str, chat: int = ADMIN, user: int = ADMIN) -> str:
    before = len(telegram.texts(chat))
    telegram.user_says(chat, text, user_id=user)
    await telegram.wait_for(lambda: len(telegram.texts(chat)) > before, timeout=60)
    return telegram.texts(chat)[-1]


async def ask(telegram: FakeTelegram, text: str, done: str, chat: int = ADMIN) -> str:
    """Ask a question and wait for the finished answer (`done` is in its last message)."""
    before = len(telegram.messages(chat))
    telegram.user_says(chat, text, user_id=ADMIN)
    await telegram.wait_for(lambda: len(telegram.messages(chat)) > before and done in telegram.texts(chat)[-1],
                            timeout=60)  # fmt: skip
    return telegram.texts(chat)[-1]


@pytest.mark.slow
async def test_upload_search_cite_delete_and_restart(bot: BotRunner, telegram: FakeTelegram,
                                                     llm: ScriptedOpenAI) -> None:
    await bot.start(admin_ids=str(ADMIN))
    status = await upload(telegram, HANDBOOK.encode("cp1251"), "handbook.txt", caption="date=2024-05-01")
    assert re.fullmatch(r"✅ handbook\.txt: 1 chunks indexed in \d+\.\d s \(id \w+\)\.", status), status
    # one status message, edited as the ingest went: downloaded -> extracted -> indexed
    stages = status_history(telegram, ADMIN)
    assert [s.split(": ")[1].split(" ")[0] for s in stages] == ["downloaded", "extracted", "1"], stages
    assert len(telegram.messages(ADMIN)) == 1
    doc_id = re.search(r"id (\w+)", status).group(1)  # type: ignore[union-attr]
    listing = await command(telegram, "/kb")
    assert listing == f"Documents (1):\n{doc_id} · handbook.txt · 1 chunks · 2024-05-01 · by U{ADMIN} ({ADMIN})"
    hits = await command(telegram, "/kb_search ZX-4417")
    assert re.match(r"\[1\] \d\.\d{3} · handbook\.txt\n.*ZX-4417", hits), hits  # rank, score, source, text

    # a PDF: the status counts its pages; a cited answer names the page
    status = await upload(telegram, samples.make_pdf(MANUAL), "manual.pdf", caption="date=2025-01-15")
    assert status.startswith("✅ manual.pdf: 3 chunks indexed in ")
    assert status_history(telegram, ADMIN)[1] == "⏳ manual.pdf: extracted 3 pages, 3 chunks, indexing…"

    # rag mode: passages go to the model as labelled, dated reference data; the reply cites its sources
    await command(telegram, "/mode rag")
    llm.enqueue("Код доступа — ZX-4417 [1].")
    answer = await ask(telegram, "Какой код у серверной?", done="Sources:")
    assert answer.startswith("Код доступа — ZX-4417 [1].")
    assert answer.endswith("Sources:\n[1] handbook.txt (2024-05-01)")
    sent = llm.requests[-1]["messages"]
    system = sent[0]["content"]
    assert sent[0]["role"] == "system" and "ONLY the reference passages" in system
    assert "do not contain the answer" in system and "prefer the most recent" in system
    question = sent[-1]["content"]
    assert question.startswith("<reference_data>\n\n[1] source: handbook.txt, dated 2024-05-01\n")
    assert "ZX-4417" in question.split("</reference_data>")[0]
    assert question.rstrip().endswith("</reference_data>\n\nQuestion: Какой код у серверной?")

    llm.enqueue("It is rated for 16 bar [1].")
    answer = await ask(telegram, "What pressure is the QP-7310 pump rated for?", done="Sources:")
    assert answer.endswith("Sources:\n[1] manual.pdf, p. 3 (2025-01-15)")
    assert "[1] source: manual.pdf, p. 3, dated 2025-01-15\n" in llm.requests[-1]["messages"][-1]["content"]

    # the agent level gets knowledge_search over the same store
    await command(telegram, "/mode agent")
    llm.enqueue(ToolCalls(("knowledge_search", {"query": "отпуск дней"})), "28 дней.")
    await ask(telegram, "Сколько дней отпуска?", done="28 дней.")
    offered = {tool["function"]["name"] for tool in llm.requests[-2]["tools"]}
    assert "knowledge_search" in offered
    observation = next(m for m in llm.requests[-1]["messages"] if m["role"] == "tool")["content"]
    assert "28 календарных дней" in observation and "<reference_data>" in observation

    # the same content again replaces instead of duplicating; without a date in the caption, the upload's date
    days = {datetime.now(UTC).date().isoformat()}
    again = await upload(telegram, HANDBOOK.encode("cp1251"), "handbook-copy.txt")
    days.add(datetime.now(UTC).date().isoformat())
    assert again.endswith(f"(id {doc_id}); it replaced the same earlier upload.")
    listing = await command(telegram, "/kb")
    assert listing.count("\n") == 2  # header + two documents
    assert any(f"{doc_id} · handbook-copy.txt · 1 chunks · {day} ·" in listing for day in days), listing

    # restart: documents and the lexical index are intact
    await bot.restart()
    assert "ZX-4417" in await command(telegram, "/kb_search ZX-4417")
    assert f"{doc_id} · handbook-copy.txt" in await command(telegram, "/kb")
    assert await command(telegram, f"/kb_del {doc_id}") == f"Deleted {doc_id}."
    assert await command(telegram, f"/kb_del {doc_id}") == f"No document with id {doc_id} (see /kb)."
    assert "handbook" not in await command(telegram, "/kb_search ZX-4417")
    assert (await command(telegram, "/kb")).startswith("Documents (1):\n")


def encrypted_pdf() -> bytes:
    return samples.make_pdf(["Salaries for 2024."], user_password="secret")


HOSTILE = [
    pytest.param(lambda: samples.make_zip_bomb_docx(64), "report.docx", "zip bomb", id="zip-bomb-docx"),
    pytest.param(lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a pdf", "scan.pdf", "damaged",
                 id="corrupt-pdf"),
    pytest.param(encrypted_pdf, "salaries.pdf", "password-protected", id="encrypted-pdf"),
    pytest.param(lambda: bytes(range(256)) * 64, "notes.txt", "Unsupported file type", id="binary-renamed-txt"),
    pytest.param(lambda: b"", "empty.txt", "empty", id="empty-file"),
    pytest.param(lambda: b"\x7fELF\x02\x01\x01" + b"\0" * 500, "tool.md", "Unsupported file type: this is an exec",
                 id="elf-as-markdown"),
    pytest.param(lambda: b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.html", "Unsupported file type: this is a PNG",
                 id="png-as-html"),
]


@pytest.mark.slow
async def test_hostile_files_get_clear_replies_and_change_nothing(bot: BotRunner, telegram: FakeTelegram) -> None:
    await bot.start(admin_ids=str(ADMIN))
    assert (await upload(telegram, HANDBOOK.encode(), "handbook.txt")).startswith("✅")
    before = await command(telegram, "/kb")
    for param in HOSTILE:
        make, name, words = param.values
        reply = await upload(telegram, make(), name)
        assert reply.startswith(f"❌ {name}: ") and words in reply and len(reply) < 300, (param.id, reply)
        assert await command(telegram, "/kb") == before, param.id
    # refused before downloading: a name with a path in it, a bad caption date, over the 20 MB download limit
    downloads, lookups = telegram.file_downloads, len(telegram.calls_of("getFile"))
    reply = await upload(telegram, b"harmless text", "../../etc/passwd.txt")
    assert reply.startswith("❌ passwd.txt: The file name 'passwd.txt' contains a path"), reply
    assert not (bot.tmp_path / "etc").exists()
    reply = await upload(telegram, b"harmless text", "dated.txt", caption="date=31.05.2024")
    assert reply == "❌ dated.txt: Bad date in the caption: use date=YYYY-MM-DD."
    big = await upload(telegram, b"x" * 100, "huge.pdf", claimed_size=25 * 1024 * 1024)
    assert big == "⚠️ huge.pdf is 25.0 MB; files up to 20 MB can be added."
    assert (telegram.file_downloads, len(telegram.calls_of("getFile"))) == (downloads, lookups)
    assert await command(telegram, "/kb") == before
    # in Russian too
    before_ru = len(telegram.texts(ADMIN))
    telegram.send_document(ADMIN, b"   \n", "pusto.txt", user_id=ADMIN, lang="ru")
    await telegram.wait_for(lambda: len(telegram.texts(ADMIN)) > before_ru and
                            telegram.texts(ADMIN)[-1].startswith("❌"), timeout=60)
    assert final_status(telegram, ADMIN) == "❌ pusto.txt: В файле нет текста для индексации."

    # the type comes from the content: a DOCX that claims to be plain text is read as a DOCX, tables included
    docx = samples.make_docx(["Spare parts."], table=[["Part", "Price"], ["Valve QK-88", "37 EUR"]])
    assert (await upload(telegram, docx, "prices.txt", mime_type="text/plain")).startswith("✅ prices.txt")
    assert "Valve QK-88 | 37 EUR" in await command(telegram, "/kb_search QK-88 price")


async def test_non_admins_cannot_touch_the_knowledge_base(bot: BotRunner, telegram: FakeTelegram,
                                                          llm: ScriptedOpenAI) -> None:
    await bot.start(admin_ids=str(ADMIN))
    reply = await upload(telegram, HANDBOOK.encode(), "handbook.txt", chat=7, user=7)
    assert "admins only" in reply
    for text in ("/kb", "/kb_del abc", "/kb_search code", "/kb_add"):
        assert "admins only" in await command(telegram, text, chat=7, user=7)
    reply = await upload(telegram, HANDBOOK.encode(), "group.txt", chat=-50, user=7, caption="/kb_add")
    assert "admins only" in reply
    assert telegram.file_downloads == 0 and not telegram.calls_of("getFile")
    assert (await command(telegram, "/kb")).startswith("The knowledge base is empty")
    # group: an admin's document without the /kb_add caption is ignored; with it, it is indexed
    telegram.send_document(-50, HANDBOOK.encode(), "group.txt", user_id=ADMIN)
    status = await upload(telegram, HANDBOOK.encode(), "group.txt", chat=-50, caption="/kb_add")
    assert status.startswith("✅ group.txt")
    assert telegram.file_downloads == 1


async def test_a_broken_embedding_model_gets_a_clear_reply(bot: BotRunner, telegram: FakeTelegram) -> None:
    model_dir = bot.tmp_path / "not-a-model"  # EMBEDDING_MODEL pointing at a directory without a model
    model_dir.mkdir()
    await bot.start(admin_ids=str(ADMIN), embedding_model=str(model_dir))
    reply = await upload(telegram, HANDBOOK.encode(), "handbook.txt")
    assert reply.startswith(f"❌ handbook.txt: Could not load the embedding model '{model_dir}'"), reply
    assert (await command(telegram, "/kb")).startswith("The knowledge base is empty")


def test_long_listings_are_split_into_messages_under_the_limit() -> None:
    rows = [f"doc{i:03d} · {'report ' * 8}{i}.pdf · 12 chunks · 2024-05-01 · by @alice (100)" for i in range(200)]
    messages = pack_lines(rows, header="Documents (200):", limit=4000)
    assert len(messages) > 1 and all(len(m) <= 4000 for m in messages)
    assert messages[0].startswith("Documents (200):\ndoc000 ")
    assert "\n".join(messages).split("\n")[1:] == rows  # every row once, in order


PUMP_MANUAL = ("Pump manual.\n\nThe QP-7310 pump is rated for 16 bar; service it every 500 hours.\n\n"
               "Replace the QP-7310 seals with kit SK-88 when the pressure drops below 12 bar.")


def edit_says(words: str) -> Callable[[str, dict[str, Any]], bool]:
    """A FakeTelegram.hold predicate: edits whose text contains `words`."""
    return lambda method, params: method == "editMessageText" and words in str(params.get("text", ""))


@pytest.mark.slow
async def test_a_slow_upload_leaves_the_chat_free_and_kb_cancel_leaves_the_kb_unchanged(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI) -> None:
    await bot.start(admin_ids=str(ADMIN), kb_max_jobs=1)
    assert (await upload(telegram, HANDBOOK.encode(), "handbook.txt")).startswith("✅")
    listing = await command(telegram, "/kb")
    query = "/kb_search ZX-4417 QP-7310 pump seals"
    before = await command(telegram, query)
    assert "handbook.txt" in before

    # Telegram is slow to confirm the "extracted" edit: the ingest waits there, parsed but not yet embedded
    gate = telegram.hold(edit_says("extracted"))
    telegram.send_document(ADMIN, PUMP_MANUAL.encode(), "manual.txt", user_id=ADMIN)
    await telegram.wait_for(lambda: telegram.held)
    # meanwhile the chat answers questions and commands
    llm.enqueue("Hello from the model.")
    assert await ask(telegram, "Hi there", done="Hello from the model.") == "Hello from the model."
    assert await command(telegram, query) == before
    # uploads in progress are bounded (KB_MAX_JOBS=1 here): another one is refused, nothing downloaded
    downloads = telegram.file_downloads
    busy = await upload(telegram, b"Another file.", "other.txt")
    assert busy.startswith("⚠️ other.txt: 1 uploads are in progress already"), busy
    assert telegram.file_downloads == downloads

    assert await command(telegram, "/kb_cancel") == "Cancelling: manual.txt."
    gate.set()  # the ingest goes on from "extracted" and stops before it embeds or writes anything
    await telegram.wait_for(lambda: any(m.text.startswith("⏹ manual.txt") for m in telegram.messages(ADMIN)))
    status = next(m for m in telegram.messages(ADMIN) if m.text.startswith("⏹ manual.txt"))
    assert status.text == "⏹ manual.txt: upload cancelled; the knowledge base is unchanged."
    assert await command(telegram, "/kb") == listing
    assert await command(telegram, query) == before  # chroma and the BM25 index are as they were
    assert await command(telegram, "/kb_cancel") == "No upload in progress here."
    # and the next upload goes through
    assert (await upload(telegram, PUMP_MANUAL.encode(), "manual.txt")).startswith("✅ manual.txt")
    assert "manual.txt" in await command(telegram, query)


async def test_a_restart_abandons_an_upload_in_progress(bot: BotRunner, telegram: FakeTelegram) -> None:
    """Restart semantics: an upload in progress is abandoned cleanly (it says so), never re-run after the restart."""
    await bot.start(admin_ids=str(ADMIN))
    gate = telegram.hold(lambda method, params: method == "file")  # a download that takes forever
    telegram.send_document(ADMIN, HANDBOOK.encode(), "handbook.txt", user_id=ADMIN)
    await telegram.wait_for(lambda: telegram.held)
    await bot.stop()
    assert telegram.texts(ADMIN)[-1] == ("⏹ handbook.txt: the bot restarted before indexing finished; the knowledge "
                                         "base is unchanged. Send the file again.")
    gate.set()
    lookups = len(telegram.calls_of("getFile"))
    await bot.start()
    assert (await command(telegram, "/kb")).startswith("The knowledge base is empty")
    assert len(telegram.calls_of("getFile")) == lookups  # the upload was not run again


async def test_a_knowledge_base_outage_leaves_the_agent_working_and_tells_users_nothing_internal(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # a chroma server that is down: nothing listens there
    await bot.start(default_mode="agent", chroma_host="127.0.0.1", chroma_port=port)
    caplog.set_level(logging.INFO)
    llm.enqueue(ToolCalls(("calculator", {"expression": "6*7"})), "It is 42.")
    assert await ask(telegram, "What is 6*7?", done="It is 42.", chat=5) == "It is 42."
    assert {tool["function"]["name"] for tool in llm.requests[0]["tools"]} == {"calculator"}
    llm.enqueue(ToolCalls(("calculator", {"expression": "7*8"})), "It is 56.")
    assert await ask(telegram, "And 7*8?", done="It is 56.", chat=5) == "It is 56."

    # rag: a short notice instead of an answer; the model is not asked to answer without its passages
    await command(telegram, "/mode rag", chat=5, user=5)
    calls = len(llm.requests)
    telegram.user_says(5, "How long is vacation?", lang="ru")
    await telegram.wait_for(lambda: telegram.texts(5)[-1].startswith("⚠️"))
    assert telegram.texts(5)[-1] == ("⚠️ База знаний сейчас недоступна, поэтому ответить по ней я не могу. "
                                     "Попробуйте позже.")
    assert len(llm.requests) == calls
    said = "\n".join(telegram.texts(5))
    for internal in (str(port), "127.0.0.1", "chroma", str(bot.tmp_path), "Error", "Traceback"):
        assert internal not in said, internal

    # the admins' view: the log has the details, once for the whole outage
    outage = [r for r in caplog.records if r.levelno >= logging.WARNING and "knowledge base" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelno == logging.ERROR
    assert f"127.0.0.1:{port}" in caplog.text


@pytest.mark.slow
async def test_a_cited_answer_delivered_after_a_telegram_outage_keeps_its_sources(
        bot: BotRunner, telegram: FakeTelegram, llm: ScriptedOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.pump")
    # guards off: a scripted echo in the wrong language would be asked again, and this test counts model calls
    await bot.start(admin_ids=str(ADMIN), send_retry_seconds=0.5, guards="")
    await upload(telegram, HANDBOOK.encode(), "handbook.txt", caption="date=2024-05-01")
    await command(telegram, "/mode rag")
    before = len(telegram.texts(ADMIN))
    telegram.faults = FaultPlan({"sendMessage", "editMessageText", "sendMessageDraft", "sendChatAction"},
                                rate_5xx=1.0)  # Telegram is down when the answer is ready
    telegram.user_says(ADMIN, "What is the server room access code?", user_id=ADMIN)
    await telegram.wait_for(lambda: any("could not be delivered" in r.getMessage() for r in caplog.records),
                            timeout=120)
    telegram.faults = None  # back: the update runs again and delivers the stored answer
    await telegram.wait_for(lambda: len(telegram.texts(ADMIN)) > before, timeout=60)
    while (await bot.app.inbox.counts()).get("processing", 0) or (await bot.app.inbox.counts()).get("pending", 0):
        await asyncio.sleep(0.05)
    answer = telegram.texts(ADMIN)[before:]
    assert len(answer) == 1, answer  # once
    assert "Sources:\n[1] handbook.txt (2024-05-01)" in answer[0], answer  # with the sources it cited
    assert len(llm.requests) == 1
