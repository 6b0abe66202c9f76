"""/eval (admins): a cases file sent with the caption `/eval [--mode "LEVEL MODEL"]... [--repeats N]` runs the
evaluation in the background; one status message shows progress; the table, the chart and the reports follow.
`/eval stop` cancels it. One evaluation at a time per bot."""

from __future__ import annotations

import asyncio
import html
import io
import logging
import shlex
import time
from typing import Any

from aiogram import Bot, Router
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from aiohttp import ClientError

from bot.eval_jobs import EvalBusy, EvalJob, EvalJobs
from bot.handlers.admin import IsAdmin
from bot.i18n import t

log = logging.getLogger(__name__)
MAX_CASES_BYTES = 2 * 1024 * 1024
PROGRESS_EVERY = 2.0  # seconds between status edits (Telegram's per-chat pace)


def _parse_args(text: str) -> dict[str, Any]:
    """The CLI's own flags (minus file and output ones), so `/eval` and `adaptbot eval` read alike."""
    from evals.cli import parser

    p = parser()
    p.exit_on_error = False
    args = p.parse_args(["-", *shlex.split(text)])
    if args.repeats < 1 or args.repeats > 20 or args.concurrency < 1 or not 0 <= args.target <= 1:
        raise ValueError("--repeats 1-20, --concurrency >= 1, --target 0-1")
    return {"modes": args.mode, "repeats": args.repeats, "concurrency": args.concurrency, "judge": args.judge,
            "target": args.target}


async def eval_cmd(message: Message, command: CommandObject, bot: Bot, services: Any, eval_jobs: EvalJobs,
                   lang: str) -> None:
    from evals.cases import CasesError, parse_cases
    from evals.job import EvalSpec, EvalSpecError

    args = (command.args or "").strip()
    if args == "stop":
        job = eval_jobs.stop()
        await message.answer(t("eval_stopping" if job else "eval_nothing", lang))
        return
    if eval_jobs.current is not None:
        await message.answer(t("eval_busy", lang, percent=eval_jobs.current.percent))
        return
    if message.document is None:
        await message.answer(t("eval_usage", lang))
        return
    try:
        options = _parse_args(args)
    except (ValueError, SystemExit) as exc:  # argparse exits on some errors even with exit_on_error=False
        await message.answer(t("eval_bad_args", lang, reason=html.escape(str(exc) or "?")))
        return
    if (message.document.file_size or 0) > MAX_CASES_BYTES:
        await message.answer(t("eval_bad_file", lang, reason=f"> {MAX_CASES_BYTES // 1024 // 1024} MB"))
        return
    buffer = io.BytesIO()
    try:
        await bot.download(message.document, destination=buffer)
    except (TelegramAPIError, ClientError, TimeoutError):
        await message.answer(t("kb_download_failed", lang))
        return
    name = (message.document.file_name or "").lower()
    try:
        text = buffer.getvalue().decode("utf-8-sig")
        cases = parse_cases(text, csv_format=name.endswith(".csv"))
    except UnicodeDecodeError:
        await message.answer(t("eval_bad_file", lang, reason="not UTF-8 text"))
        return
    except CasesError as exc:
        await message.answer(t("eval_bad_file", lang, reason="\n" + "\n".join(exc.problems[:20])))
        return
    try:
        spec = EvalSpec.build(services, **options)
    except EvalSpecError as exc:
        await message.answer(t("eval_bad_args", lang, reason=str(exc)))
        return
    assert message.from_user is not None

    async def run(job: EvalJob) -> None:
        await _run(job, message, services, spec, cases, lang)

    try:
        eval_jobs.start(message.chat.id, message.from_user.id, run)
    except EvalBusy as busy:  # another admin started one meanwhile
        await message.answer(t("eval_busy", lang, percent=busy.job.percent))


async def _run(job: EvalJob, message: Message, services: Any, spec: Any, cases: list[Any], lang: str) -> None:
    from evals.job import run_job
    from evals.report import recommendation_text, summary_table

    status = await message.answer(t("eval_progress", lang, done=0, total=len(cases) * len(spec.modes) * spec.repeats))
    last = 0.0
    edits: set[asyncio.Task[Any]] = set()

    def progress(done: int, total: int) -> None:
        nonlocal last
        job.done, job.total = done, total
        now = time.monotonic()
        if done < total and now - last >= PROGRESS_EVERY:
            last = now
            task = asyncio.create_task(_edit(status, t("eval_progress", lang, done=done, total=total)))
            edits.add(task)
            task.add_done_callback(edits.discard)

    out_dir = services.settings.data_dir / "eval" / f"bot-{int(time.time())}"
    try:
        report, paths = await run_job(services, spec, cases, out_dir, progress=progress)
    except asyncio.CancelledError:
        await asyncio.shield(_edit(status, t("eval_stopped", lang, done=job.done, total=job.total)))
        raise
    finally:
        for task in edits:
            task.cancel()
    # what the evaluation consumed counts in /usage for the admin who started it
    tokens = sum(m["tokens_in"] + m["tokens_out"] for m in report["modes"])
    await services.chat.add_usage(job.user_id, tokens=tokens)
    await _edit(status, t("eval_done", lang, total=job.total))
    table = f"<pre>{html.escape(summary_table(report))}</pre>\n\n{html.escape(recommendation_text(report))}"
    await message.answer(table, parse_mode=ParseMode.HTML)
    files = await asyncio.to_thread(lambda: {key: path.read_bytes() for key, path in paths.items()})
    await message.answer_photo(BufferedInputFile(files["png"], "chart.png"))
    for key in ("md", "json"):
        await message.answer_document(BufferedInputFile(files[key], paths[key].name))


async def _edit(status: Message, text: str) -> None:
    try:
        await status.edit_text(text)
    except (TelegramAPIError, ClientError, TimeoutError):
        log.info("could not update the evaluation status", exc_info=True)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.filter(IsAdmin())
    router.message.register(eval_cmd, Command("eval"))
    return router
