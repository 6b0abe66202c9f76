"""Admin knowledge-base commands: upload a file (private chat, or `/kb_add` caption in groups), /kb, /kb_del,
/kb_search. The router-level admin filter keeps everyone else out (they get the refusals router)."""

from __future__ import annotations

import io
import logging
import re

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.config import Settings
from bot.handlers.admin import IsAdmin
from bot.i18n import t
from bot.knowledge_link import LazyKnowledge

log = logging.getLogger(__name__)
_DATE = re.compile(r"\bdate=(\S+)")

# Russian texts for the knowledge errors (their English messages are complete sentences already)
_RU_ERRORS = {
    "UnsupportedFileError": "Неподдерживаемый тип файла: пришлите TXT, Markdown, PDF, DOCX или HTML.",
    "EmptyDocumentError": "В файле нет текста для индексации.",
    "EncryptedFileError": "Файл защищён паролем: пришлите его без пароля.",
    "CorruptFileError": "Файл повреждён и не читается; проверьте, что он открывается, и попробуйте снова.",
    "FileTooLargeError": "Файл слишком большой для индексации.",
    "ParseTimeoutError": "Разбор файла занял слишком много времени.",
    "ParseLimitError": "Разбор файла превысил пределы памяти.",
    "UnsafeFileNameError": "Недопустимое имя файла.",
}


def _reason(exc: Exception, lang: str) -> str:
    if lang == "ru":
        for cls in type(exc).__mro__:
            if cls.__name__ in _RU_ERRORS:
                return _RU_ERRORS[cls.__name__]
    return str(exc)


async def upload(message: Message, bot: Bot, settings: Settings, knowledge: LazyKnowledge, lang: str) -> None:
    from knowledge.errors import KnowledgeError
    from knowledge.types import IngestProgress

    doc = message.document
    assert doc is not None and message.from_user is not None
    name = doc.file_name or "document"
    limit_mb = settings.kb_max_file_mb
    if doc.file_size is not None and doc.file_size > limit_mb * 1024 * 1024:  # refuse before downloading
        await message.answer(t("kb_too_large", lang, name=name, size=f"{doc.file_size / 2**20:.1f}", limit=limit_mb))
        return
    date_match = _DATE.search(message.caption or "")
    buffer = io.BytesIO()
    await bot.download(doc, destination=buffer)
    data = buffer.getvalue()
    status = await message.answer(t("kb_downloaded", lang, name=name, size=max(1, len(data) // 1024)))

    async def progress(event: IngestProgress) -> None:
        if event.stage == "extracted":
            pages = t("kb_pages", lang, n=event.pages) if event.pages else ""
            await status.edit_text(t("kb_extracted", lang, name=name, pages=pages, chunks=event.chunks))

    try:
        kb = await knowledge.get()
        report = await kb.add_document(data, name, uploader=str(message.from_user.id),
                                       date=date_match.group(1) if date_match else None, progress=progress)
    except KnowledgeError as exc:
        log.info("upload of %r refused: %s", name, type(exc).__name__)
        await status.edit_text(t("kb_failed", lang, name=name, reason=_reason(exc, lang)))
        return
    replaced = t("kb_replaced", lang) if report.replaced else ""
    await status.edit_text(t("kb_indexed", lang, name=report.document.name, chunks=report.chunks,
                             seconds=report.seconds, doc_id=report.doc_id, replaced=replaced))


async def list_documents(message: Message, knowledge: LazyKnowledge, lang: str) -> None:
    docs = await (await knowledge.get()).list_documents()
    if not docs:
        await message.answer(t("kb_empty", lang))
        return
    rows = "\n".join(f"{d.doc_id} · {d.name} · {d.chunks} ch · {d.date} · by {d.uploader}" for d in docs)
    await message.answer(t("kb_list", lang, n=len(docs), rows=rows))


async def delete_document(message: Message, command: CommandObject, knowledge: LazyKnowledge, lang: str) -> None:
    doc_id = (command.args or "").strip()
    if not doc_id:
        await message.answer(t("kb_del_usage", lang))
        return
    deleted = await (await knowledge.get()).delete(doc_id)
    await message.answer(t("kb_deleted" if deleted else "kb_not_found", lang, doc_id=doc_id))


async def search(message: Message, command: CommandObject, knowledge: LazyKnowledge, lang: str) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(t("kb_search_usage", lang))
        return
    hits = await (await knowledge.get()).search(query, 5)
    if not hits:
        await message.answer(t("kb_no_hits", lang))
        return
    lines = []
    for i, h in enumerate(hits, 1):
        page = f", p. {h.page}" if h.page else ""
        snippet = " ".join(h.text.split())[:300]
        lines.append(f"[{i}] {h.score:.3f} · {h.source}{page}\n{snippet}")
    await message.answer("\n\n".join(lines)[:4000])


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.message.register(upload, F.document, F.chat.type == "private")
    router.message.register(upload, F.document, Command("kb_add"))
    router.message.register(list_documents, Command("kb"))
    router.message.register(delete_document, Command("kb_del"))
    router.message.register(search, Command("kb_search"))
    return router
