"""The knowledge base through the real bot: admin uploads, /kb commands, cited answers in `rag` mode."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI, ToolCalls
from tests.fakes.telegram_server import FakeTelegram

ADMIN = 100
HANDBOOK = ("Отпуск сотрудника составляет 28 календарных дней в году.\n\n"
            "Код доступа к серверной комнате: ZX-4417. Его меняют каждый квартал.\n\n"
            "The office opens at 9:00 and closes at 18:00 on weekdays.")


def final_status(telegram: FakeTelegram, chat: int) -> str:
    return telegram.texts(chat)[-1]


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


@pytest.mark.slow
async def test_upload_search_cite_delete_and_restart(bot: BotRunner, telegram: FakeTelegram,
                                                     llm: ScriptedOpenAI) -> None:
    await bot.start(admin_ids=str(ADMIN))
    status = await upload(telegram, HANDBOOK.encode("cp1251"), "handbook.txt", caption="date=2024-05-01")
    assert status.startswith("✅ handbook.txt: ") and "chunks indexed" in status
    assert telegram.messages(ADMIN)[-1].edits >= 1  # one status message, edited as it went
    doc_id = re.search(r"id (\w+)", status).group(1)  # type: ignore[union-attr]
    listing = await command(telegram, "/kb")
    assert doc_id in listing and "handbook.txt" in listing and "2024-05-01" in listing and str(ADMIN) in listing
    hits = await command(telegram, "/kb_search ZX-4417")
    assert hits.startswith("[1]") and "ZX-4417" in hits.split("\n\n")[0]

    # rag mode: passages go to the model as labelled, dated reference data; the reply cites its sources
    await command(telegram, "/mode rag")
    llm.enqueue("Код доступа — ZX-4417 [1].")
    answer = await command(telegram, "Какой код у серверной?")
    assert answer.startswith("Код доступа — ZX-4417 [1].")
    assert "Sources:\n[1] handbook.txt (2024-05-01)" in answer
    sent = llm.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and "ONLY the reference passages" in sent[0]["content"]
    question = sent[-1]["content"]
    assert "<reference_data>" in question and "ZX-4417" in question and "source: handbook.txt" in question
    assert question.rstrip().endswith("Question: Какой код у серверной?")

    # the agent level gets knowledge_search over the same store
    await command(telegram, "/mode agent")
    llm.enqueue(ToolCalls(("knowledge_search", {"query": "отпуск дней"})), "28 дней.")
    await command(telegram, "Сколько дней отпуска?")
    offered = {tool["function"]["name"] for tool in llm.requests[-2]["tools"]}
    assert "knowledge_search" in offered
    observation = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"][0]["content"]
    assert "28 календарных дней" in observation

    # the same content again replaces instead of duplicating
    again = await upload(telegram, HANDBOOK.encode("cp1251"), "handbook-copy.txt")
    assert "replaced" in again
    assert (await command(telegram, "/kb")).count("\n") == 1  # header + one document

    # restart: documents and the lexical index are intact
    await bot.restart()
    assert "ZX-4417" in await command(telegram, "/kb_search ZX-4417")
    doc_id = re.search(r"\n(\w+) ·", await command(telegram, "/kb")).group(1)  # type: ignore[union-attr]
    assert await command(telegram, f"/kb_del {doc_id}") == f"Deleted {doc_id}."
    assert await command(telegram, "/kb_search ZX-4417") == "Nothing found."
    assert (await command(telegram, "/kb")).startswith("The knowledge base is empty")


def zip_bomb_docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * (300 * 1024 * 1024))
    return buffer.getvalue()


HOSTILE = [
    pytest.param(zip_bomb_docx, "report.docx", id="zip-bomb-docx"),
    pytest.param(lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a pdf", "scan.pdf", id="corrupt-pdf"),
    pytest.param(lambda: bytes(range(256)) * 64, "notes.txt", id="binary-renamed-txt"),
    pytest.param(lambda: b"", "empty.txt", id="empty-file"),
    pytest.param(lambda: b"\x7fELF\x02\x01\x01" + b"\0" * 500, "tool.md", id="elf-as-markdown"),
]


@pytest.mark.slow
async def test_hostile_files_get_clear_replies_and_change_nothing(bot: BotRunner, telegram: FakeTelegram) -> None:
    await bot.start(admin_ids=str(ADMIN))
    assert (await upload(telegram, HANDBOOK.encode(), "handbook.txt")).startswith("✅")
    before = await command(telegram, "/kb")
    for param in HOSTILE:
        make, name = param.values
        reply = await upload(telegram, make(), name)
        assert reply.startswith("❌") and len(reply) < 300, (param.id, reply)
        assert await command(telegram, "/kb") == before, param.id
    traversal = await upload(telegram, b"harmless text", "../../etc/passwd.txt")
    assert traversal.startswith("❌") or "passwd.txt" in traversal
    assert not (bot.tmp_path / "etc").exists()
    # over the Bot API's 20 MB download limit: refused before downloading anything
    downloads = telegram.file_downloads
    big = await upload(telegram, b"x" * 100, "huge.pdf", claimed_size=25 * 1024 * 1024)
    assert big.startswith("⚠️") and "20 MB" in big and telegram.file_downloads == downloads


async def test_non_admins_cannot_touch_the_knowledge_base(bot: BotRunner, telegram: FakeTelegram,
                                                          llm: ScriptedOpenAI) -> None:
    await bot.start(admin_ids=str(ADMIN))
    reply = await upload(telegram, HANDBOOK.encode(), "handbook.txt", chat=7, user=7)
    assert "admins only" in reply
    for text in ("/kb", "/kb_del abc", "/kb_search code", "/kb_add"):
        assert "admins only" in await command(telegram, text, chat=7, user=7)
    assert telegram.file_downloads == 0
    # group: an admin's document without the /kb_add caption is ignored; with it, it is indexed
    telegram.send_document(-50, HANDBOOK.encode(), "group.txt", user_id=ADMIN)
    status = await upload(telegram, HANDBOOK.encode(), "group.txt", chat=-50, caption="/kb_add")
    assert status.startswith("✅ group.txt")
    assert telegram.file_downloads == 1
