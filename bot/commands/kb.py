"""Bot-admin knowledge-base commands: /kb_add (a file: indexed in the background), /kb, /kb_del, /kb_search,
/kb_cancel. In Telegram a file sent in a private chat is /kb_add with the caption as its arguments."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bot.commands.base import Command, Context, DocumentUnavailable, Reply, Role, Sent
from bot.i18n import knowledge_error

if TYPE_CHECKING:
    from bot.ingest_jobs import IngestJob
    from bot.knowledge_link import LazyKnowledge

log = logging.getLogger(__name__)
_DATE = re.compile(r"\bdate=(\S+)")
MESSAGE_LIMIT = 4000  # below Telegram's 4096 (UTF-16 units), with room for a header


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


def _knowledge(ctx: Context) -> LazyKnowledge:
    knowledge = ctx.services.knowledge
    assert knowledge is not None  # the kb commands are registered only when the knowledge part is installed
    return knowledge


async def add(ctx: Context) -> Reply | None:
    """Check an admin's file and start indexing it in the background; the chat is free again at once.

    The job edits one status reply: downloaded -> extracted -> embedding -> indexed (or why not)."""
    from bot.ingest_jobs import TooManyJobs
    from knowledge.errors import FileTooLargeError, InvalidInputError, KnowledgeError, UnsafeFileNameError
    from knowledge.loaders import sanitize_filename

    doc = ctx.document
    if doc is None:
        return Reply(ctx.t("kb_add_usage"))
    knowledge = _knowledge(ctx)
    name = sanitize_filename(doc.name)  # for display only: the name is never a path
    date_match = _DATE.search(ctx.args)
    try:
        kb = await knowledge.get()
    except KnowledgeError as exc:
        return Reply(ctx.t("kb_failed", name=name, reason=knowledge_error(exc, ctx.lang)))
    try:  # refuse what we can before downloading anything: a crafted name, the size, a bad date
        date = kb.precheck(doc.name, doc.size, date_match.group(1) if date_match else None)
    except FileTooLargeError:
        size = f"{(doc.size or 0) / 2**20:.1f}"
        return Reply(ctx.t("kb_too_large", name=name, size=size, limit=round(kb.max_file_bytes / 2**20)))
    except InvalidInputError as exc:
        reason = knowledge_error(exc, ctx.lang) if isinstance(exc, UnsafeFileNameError) else ctx.t("kb_bad_date")
        return Reply(ctx.t("kb_failed", name=name, reason=reason))

    async def run(job: IngestJob) -> None:
        await _ingest(job, ctx, knowledge, date)

    try:
        knowledge.jobs.start(ctx.chat_id, name, run)
    except TooManyJobs:
        return Reply(ctx.t("kb_busy", name=name, n=len(knowledge.jobs)))
    return None


async def _ingest(job: IngestJob, ctx: Context, knowledge: LazyKnowledge, date: str) -> None:
    """One upload, in the background: wait for its turn, download, index; every outcome ends in the status."""
    from knowledge.errors import IngestCancelledError, KnowledgeError
    from knowledge.types import IngestProgress

    assert ctx.document is not None
    name = job.name
    status: Sent | None = None
    shown = ""

    async def show(text: str) -> None:
        """The job's one status reply: sent once, then edited."""
        nonlocal status, shown
        if status is None:
            status = await ctx.outbox.send(Reply(text))
        elif shown != text:
            await status.edit(text)
        shown = text

    async def progress(event: IngestProgress) -> None:
        if event.stage == "extracted":
            pages = ctx.t("kb_pages", n=event.pages) if event.pages else ""
            await show(ctx.t("kb_extracted", name=name, pages=pages, chunks=event.chunks))
        elif event.stage == "embedding" and (event.done or 0) < (event.chunks or 0):  # after the last: "indexed"
            await show(ctx.t("kb_embedding", name=name, done=event.done, chunks=event.chunks))

    outcome: str | None = None
    try:
        ahead = knowledge.jobs.waiting(job)
        if ahead:
            await show(ctx.t("kb_queued", name=name, ahead=ahead))
        async with knowledge.jobs.turn:
            try:
                data = await ctx.document.read()
            except DocumentUnavailable as exc:
                log.warning("download of %r failed: %s", name, exc)
                outcome = ctx.t("kb_failed", name=name, reason=ctx.t("kb_download_failed"))
                return
            await show(ctx.t("kb_downloaded", name=name, size=max(1, len(data) // 1024)))
            kb = await knowledge.get()
            job.indexing = True  # from here on only job.cancel stops it, between stages
            report = await kb.add_document(data, ctx.document.name, uploader=f"{ctx.user_name} ({ctx.user_id})",
                                           date=date, progress=progress, cancel=job.cancel)
        replaced = ctx.t("kb_replaced") if report.replaced else ""
        outcome = ctx.t("kb_indexed", name=report.document.name, chunks=report.chunks, seconds=report.seconds,
                        doc_id=report.doc_id, replaced=replaced)
    except (asyncio.CancelledError, IngestCancelledError):
        outcome = ctx.t("kb_stopped_restart" if knowledge.jobs.closing else "kb_cancelled", name=name)
        log.info("upload of %r cancelled%s", name, " by the shutdown" if knowledge.jobs.closing else "")
    except KnowledgeError as exc:
        log.info("upload of %r refused: %s", name, type(exc).__name__)
        outcome = ctx.t("kb_failed", name=name, reason=knowledge_error(exc, ctx.lang))
    except Exception:
        log.exception("upload of %r failed", name)
        outcome = ctx.t("kb_failed", name=name, reason=ctx.t("err_internal"))
    finally:
        if outcome is not None:
            try:
                await asyncio.shield(show(outcome))  # said even when the job's task is being cancelled
            except Exception:  # the transport is unreachable: the log has the outcome
                log.warning("could not show the outcome of the upload of %r", name, exc_info=True)


async def cancel(ctx: Context) -> Reply:
    """Stop this chat's uploads in progress; each one's status says when it has stopped."""
    jobs = _knowledge(ctx).jobs.cancel_chat(ctx.chat_id)
    if not jobs:
        return Reply(ctx.t("kb_nothing_to_cancel"))
    return Reply(ctx.t("kb_cancelling", names=", ".join(job.name for job in jobs)))


async def list_documents(ctx: Context) -> list[Reply]:
    from knowledge.errors import KnowledgeError

    try:
        docs = await (await _knowledge(ctx).get()).list_documents()
    except KnowledgeError as exc:
        return [Reply(f"❌ {knowledge_error(exc, ctx.lang)}")]
    if not docs:
        return [Reply(ctx.t("kb_empty"))]
    rows = (ctx.t("kb_row", doc_id=d.doc_id, name=d.name, chunks=d.chunks, date=d.date, uploader=d.uploader)
            for d in docs)
    return [Reply(text) for text in pack_lines(rows, header=ctx.t("kb_list", n=len(docs)))]


async def delete(ctx: Context) -> Reply:
    from knowledge.errors import KnowledgeError

    doc_id = ctx.args.strip()
    if not doc_id:
        return Reply(ctx.t("kb_del_usage"))
    try:
        deleted = await (await _knowledge(ctx).get()).delete(doc_id)
    except KnowledgeError as exc:
        return Reply(f"❌ {knowledge_error(exc, ctx.lang)}")
    return Reply(ctx.t("kb_deleted" if deleted else "kb_not_found", doc_id=doc_id))


async def search(ctx: Context) -> Reply:
    from knowledge.errors import KnowledgeError

    query = ctx.args.strip()
    if not query:
        return Reply(ctx.t("kb_search_usage"))
    try:
        hits = await (await _knowledge(ctx).get()).search(query, 5)
    except KnowledgeError as exc:
        return Reply(f"❌ {knowledge_error(exc, ctx.lang)}")
    if not hits:
        return Reply(ctx.t("kb_no_hits"))
    lines = []
    for i, h in enumerate(hits, 1):
        page = f", p. {h.page}" if h.page else ""
        snippet = " ".join(h.text.split())[:300]
        lines.append(f"[{i}] {h.score:.3f} · {h.source}{page}\n{snippet}")
    return Reply("\n\n".join(lines)[:MESSAGE_LIMIT])


COMMANDS = [
    Command("kb", list_documents, who=Role.BOT_ADMIN, menu=False),
    Command("kb_add", add, who=Role.BOT_ADMIN, menu=False, help_args="(a file) [date=YYYY-MM-DD]"),
    Command("kb_del", delete, who=Role.BOT_ADMIN, menu=False, help_args="<id>"),
    Command("kb_search", search, who=Role.BOT_ADMIN, menu=False, help_args="<query>"),
    Command("kb_cancel", cancel, who=Role.BOT_ADMIN, menu=False),
]
