"""Admin knowledge-base commands: upload a file (private chat, or `/kb_add` caption in groups), /kb, /kb_del,
/kb_search, /kb_cancel. The router-level admin filter keeps everyone else out (they get the refusals router)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiohttp import ClientError

from bot.handlers.admin import IsAdmin
from bot.i18n import t
from bot.knowledge_link import LazyKnowledge

if TYPE_CHECKING:
    from bot.ingest_jobs import IngestJob

log = logging.getLogger(__name__)
_DATE = re.compile(r"\bdate=(\S+)")
MESSAGE_LIMIT = 4000  # below Telegram's 4096 (UTF-16 units), with room for a header

# Russian texts for the knowledge errors (their English messages are complete sentences already)
_RU_ERRORS = {
    "UnsupportedFileError": "Неподдерживаемый тип файла: пришлите TXT, Markdown, PDF, DOCX или HTML.",
    "EmptyDocumentError": "В файле нет текста для индексации.",
    "EncryptedFileError": "Файл защищён паролем: пришлите его без пароля.",
    "CorruptFileError": "Файл повреждён и не читается; проверьте, что он открывается, и попробуйте снова.",
    "FileTooLargeError": "Файл слишком большой для индексации.",
    "ParseTimeoutError": "Разбор файла занял слишком много времени; возможно, файл испорчен.",
    "ParseLimitError": "Разбор файла превысил пределы памяти; возможно, файл испорчен.",
    "UnsafeFileNameError": "Имя файла содержит путь или управляющие символы; переименуйте файл и пришлите снова.",
    "EmbeddingModelError": "Не удалось загрузить модель эмбеддингов; проверьте EMBEDDING_MODEL.",
    "StoreError": "Хранилище базы знаний не ответило; ничего не изменено. Попробуйте позже.",
    "InvalidInputError": "Неверные данные.",
}


def _reason(exc: Exception, lang: str) -> str:
    if lang == "ru":
        for cls in type(exc).__mro__:
            if cls.__name__ in _RU_ERRORS:
                return _RU_ERRORS[cls.__name__]
    return str(exc)


def _uploader(message: Message) -> str:
    """Who uploaded, for /kb: a readable name and the stable id."""
    user = message.from_user
    assert user is not None
    name = f"@{user.username}" if user.username else " ".join(user.full_name.split())[:40]
    return f"{name} ({user.id})"


def pack_lines(lines: Iterable[str], header: str = "", limit: int = MESSAGE_LIMIT) -> list[str]:
    """Lines packed into as few messages as fit under `limit` characters; the header opens the first."""
    messages: list[str] = []
    current = header
    for line in lines:
        line = line[:limit]
        if current and len(current) + 1 + len(line) > limit:
            messages.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        messages.append(current)
    return messages


async def upload(message: Message, bot: Bot, knowledge: LazyKnowledge, lang: str) -> None:
    """Check an admin's file and start indexing it in the background; the chat is free again at once.

    The job edits one status message: downloaded -> extracted -> embedding -> indexed (or why not)."""
    from bot.ingest_jobs import TooManyJobs
    from knowledge.errors import FileTooLargeError, InvalidInputError, KnowledgeError, UnsafeFileNameError
    from knowledge.loaders import sanitize_filename

    doc = message.document
    assert doc is not None
    filename = doc.file_name or "document"
    name = sanitize_filename(filename)  # for display only: the name is never a path
    date_match = _DATE.search(message.caption or "")
    try:
        kb = await knowledge.get()
    except KnowledgeError as exc:
        await message.answer(t("kb_failed", lang, name=name, reason=_reason(exc, lang)))
        return
    try:  # refuse what we can before downloading anything: a crafted name, the size, a bad date
        date = kb.precheck(filename, doc.file_size, date_match.group(1) if date_match else None)
    except FileTooLargeError:
        size = f"{(doc.file_size or 0) / 2**20:.1f}"
        await message.answer(t("kb_too_large", lang, name=name, size=size, limit=round(kb.max_file_bytes / 2**20)))
        return
    except InvalidInputError as exc:
        reason = _reason(exc, lang) if isinstance(exc, UnsafeFileNameError) else t("kb_bad_date", lang)
        await message.answer(t("kb_failed", lang, name=name, reason=reason))
        return

    async def run(job: IngestJob) -> None:
        await _ingest(job, message, bot, knowledge, filename, date, lang)

    try:
        knowledge.jobs.start(message.chat.id, name, run)
    except TooManyJobs:
        await message.answer(t("kb_busy", lang, name=name, n=len(knowledge.jobs)))


async def _ingest(job: IngestJob, message: Message, bot: Bot, knowledge: LazyKnowledge, filename: str,
                  date: str, lang: str) -> None:
    """One upload, in the background: wait for its turn, download, index; every outcome ends in the status."""
    from knowledge.errors import IngestCancelledError, KnowledgeError
    from knowledge.types import IngestProgress

    name = job.name
    status: Message | None = None

    async def show(text: str) -> None:
        """The job's one status message: sent once, then edited."""
        nonlocal status
        if status is None:
            status = await message.answer(text)
        elif status.text != text:
            status = await status.edit_text(text)  # type: ignore[assignment]

    async def progress(event: IngestProgress) -> None:
        if event.stage == "extracted":
            pages = t("kb_pages", lang, n=event.pages) if event.pages else ""
            await show(t("kb_extracted", lang, name=name, pages=pages, chunks=event.chunks))
        elif event.stage == "embedding" and (event.done or 0) < (event.chunks or 0):  # after the last: "indexed"
            await show(t("kb_embedding", lang, name=name, done=event.done, chunks=event.chunks))

    outcome: str | None = None
    try:
        ahead = knowledge.jobs.waiting(job)
        if ahead:
            await show(t("kb_queued", lang, name=name, ahead=ahead))
        async with knowledge.jobs.turn:
            buffer = io.BytesIO()
            try:
                await bot.download(message.document, destination=buffer)  # type: ignore[arg-type]
            except (TelegramAPIError, ClientError, TimeoutError) as exc:
                log.warning("download of %r failed: %s", name, type(exc).__name__)
                outcome = t("kb_failed", lang, name=name, reason=t("kb_download_failed", lang))
                return
            data = buffer.getvalue()
            await show(t("kb_downloaded", lang, name=name, size=max(1, len(data) // 1024)))
            kb = await knowledge.get()
            job.indexing = True  # from here on only job.cancel stops it, between stages
            report = await kb.add_document(data, filename, uploader=_uploader(message), date=date,
                                           progress=progress, cancel=job.cancel)
        replaced = t("kb_replaced", lang) if report.replaced else ""
        outcome = t("kb_indexed", lang, name=report.document.name, chunks=report.chunks, seconds=report.seconds,
                    doc_id=report.doc_id, replaced=replaced)
    except (asyncio.CancelledError, IngestCancelledError):
        outcome = t("kb_stopped_restart" if knowledge.jobs.closing else "kb_cancelled", lang, name=name)
        log.info("upload of %r cancelled%s", name, " by the shutdown" if knowledge.jobs.closing else "")
    except KnowledgeError as exc:
        log.info("upload of %r refused: %s", name, type(exc).__name__)
        outcome = t("kb_failed", lang, name=name, reason=_reason(exc, lang))
    except Exception:
        log.exception("upload of %r failed", name)
        outcome = t("kb_failed", lang, name=name, reason=t("err_internal", lang))
    finally:
        if outcome is not None:
            try:
                await asyncio.shield(show(outcome))  # said even when the job's task is being cancelled
            except Exception:  # Telegram unreachable: the log has the outcome
                log.warning("could not show the outcome of the upload of %r", name, exc_info=True)


async def cancel_uploads(message: Message, knowledge: LazyKnowledge, lang: str) -> None:
    """/kb_cancel: stop this chat's uploads in progress; each one's status message says when it has stopped."""
    jobs = knowledge.jobs.cancel_chat(message.chat.id)
    if not jobs:
        await message.answer(t("kb_nothing_to_cancel", lang))
        return
    await message.answer(t("kb_cancelling", lang, names=", ".join(job.name for job in jobs)))


async def list_documents(message: Message, knowledge: LazyKnowledge, lang: str) -> None:
    from knowledge.errors import KnowledgeError

    try:
        docs = await (await knowledge.get()).list_documents()
    except KnowledgeError as exc:
        await message.answer(f"❌ {_reason(exc, lang)}")
        return
    if not docs:
        await message.answer(t("kb_empty", lang))
        return
    rows = (t("kb_row", lang, doc_id=d.doc_id, name=d.name, chunks=d.chunks, date=d.date, uploader=d.uploader)
            for d in docs)
    for text in pack_lines(rows, header=t("kb_list", lang, n=len(docs))):
        await message.answer(text)


async def delete_document(message: Message, command: CommandObject, knowledge: LazyKnowledge, lang: str) -> None:
    from knowledge.errors import KnowledgeError

    doc_id = (command.args or "").strip()
    if not doc_id:
        await message.answer(t("kb_del_usage", lang))
        return
    try:
        deleted = await (await knowledge.get()).delete(doc_id)
    except KnowledgeError as exc:
        await message.answer(f"❌ {_reason(exc, lang)}")
        return
    await message.answer(t("kb_deleted" if deleted else "kb_not_found", lang, doc_id=doc_id))


async def search(message: Message, command: CommandObject, knowledge: LazyKnowledge, lang: str) -> None:
    from knowledge.errors import KnowledgeError

    query = (command.args or "").strip()
    if not query:
        await message.answer(t("kb_search_usage", lang))
        return
    try:
        hits = await (await knowledge.get()).search(query, 5)
    except KnowledgeError as exc:
        await message.answer(f"❌ {_reason(exc, lang)}")
        return
    if not hits:
        await message.answer(t("kb_no_hits", lang))
        return
    lines = []
    for i, h in enumerate(hits, 1):
        page = f", p. {h.page}" if h.page else ""
        snippet = " ".join(h.text.split())[:300]
        lines.append(f"[{i}] {h.score:.3f} · {h.source}{page}\n{snippet}")
    await message.answer("\n\n".join(lines)[:MESSAGE_LIMIT])


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.message.register(upload, F.document, F.chat.type == "private")
    router.message.register(upload, F.document, Command("kb_add"))
    router.message.register(list_documents, Command("kb"))
    router.message.register(delete_document, Command("kb_del"))
    router.message.register(search, Command("kb_search"))
    router.message.register(cancel_uploads, Command("kb_cancel"))
    return router
