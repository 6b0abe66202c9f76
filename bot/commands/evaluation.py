"""/eval (bot admins): a cases file sent with `/eval [--mode "LEVEL MODEL"]... [--repeats N]` runs the
evaluation in the background; one status reply shows progress; the table, the chart and the reports follow.
`/eval stop` cancels it. One evaluation at a time per bot."""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from typing import Any

from bot.commands.base import Command, Context, DocumentUnavailable, File, Reply, Role, Sent
from bot.eval_jobs import EvalBusy, EvalJob

log = logging.getLogger(__name__)
MAX_CASES_BYTES = 2 * 1024 * 1024
MAX_REPEATS = 20  # a chat-started evaluation is bounded; the CLI is not
PROGRESS_EVERY = 2.0  # seconds between status edits (Telegram's per-chat pace)


def _parse_args(text: str) -> dict[str, Any]:
    """The CLI's own flags (minus file and output ones), so `/eval` and `adaptbot eval` read alike."""
    from evals.cli import check_args, parser

    p = parser()
    p.exit_on_error = False
    args = p.parse_args(["-", *shlex.split(text)])
    problem = check_args(args, max_repeats=MAX_REPEATS)
    if problem:
        raise ValueError(problem)
    return {"modes": args.mode, "repeats": args.repeats, "concurrency": args.concurrency, "judge": args.judge,
            "target": args.target}


async def evaluate(ctx: Context) -> Reply | None:
    from evals.cases import CasesError, parse_cases
    from evals.job import EvalSpec, EvalSpecError

    eval_jobs = ctx.services.eval_jobs
    args = ctx.args.strip()
    if args == "stop":
        return Reply(ctx.t("eval_stopping" if eval_jobs.stop() else "eval_nothing"))
    if eval_jobs.current is not None:
        return Reply(ctx.t("eval_busy", percent=eval_jobs.current.percent))
    if ctx.document is None:
        return Reply(ctx.t("eval_usage"))
    try:
        options = _parse_args(args)
    except (ValueError, SystemExit) as exc:  # argparse exits on some errors even with exit_on_error=False
        return Reply(ctx.t("eval_bad_args", reason=str(exc) or "?"))
    if (ctx.document.size or 0) > MAX_CASES_BYTES:
        return Reply(ctx.t("eval_bad_file", reason=f"> {MAX_CASES_BYTES // 1024 // 1024} MB"))
    try:
        data = await ctx.document.read()
    except DocumentUnavailable:
        return Reply(ctx.t("kb_download_failed"))
    try:
        cases = parse_cases(data.decode("utf-8-sig"), csv_format=ctx.document.name.lower().endswith(".csv"))
    except UnicodeDecodeError:
        return Reply(ctx.t("eval_bad_file", reason="not UTF-8 text"))
    except CasesError as exc:
        return Reply(ctx.t("eval_bad_file", reason="\n" + "\n".join(exc.problems[:20])))
    try:
        spec = EvalSpec.build(ctx.services, **options)
    except EvalSpecError as exc:
        return Reply(ctx.t("eval_bad_args", reason=str(exc)))

    async def run(job: EvalJob) -> None:
        await _run(job, ctx, spec, cases)

    try:
        eval_jobs.start(ctx.chat_id, ctx.user_id, run)
    except EvalBusy as busy:  # another admin started one meanwhile
        return Reply(ctx.t("eval_busy", percent=busy.job.percent))
    return None


async def _run(job: EvalJob, ctx: Context, spec: Any, cases: list[Any]) -> None:
    from evals.job import run_job
    from evals.report import recommendation_text, summary_table

    services, send = ctx.services, ctx.outbox.send
    status = await send(Reply(ctx.t("eval_progress", done=0, total=len(cases) * len(spec.modes) * spec.repeats)))
    last = 0.0
    edits: set[asyncio.Task[Any]] = set()

    def progress(done: int, total: int) -> None:
        nonlocal last
        job.done, job.total = done, total
        now = time.monotonic()
        if done < total and now - last >= PROGRESS_EVERY:
            last = now
            task = asyncio.create_task(_edit(status, ctx.t("eval_progress", done=done, total=total)))
            edits.add(task)
            task.add_done_callback(edits.discard)

    out_dir = services.settings.data_dir / "eval" / f"bot-{int(time.time())}"
    try:
        report, paths = await run_job(services, spec, cases, out_dir, progress=progress)
    except asyncio.CancelledError:
        await asyncio.shield(_edit(status, ctx.t("eval_stopped", done=job.done, total=job.total)))
        raise
    finally:
        for task in edits:
            task.cancel()
    # what the evaluation consumed counts in /usage for the admin who started it
    tokens = sum(m["tokens_in"] + m["tokens_out"] for m in report["modes"])
    await services.chat.add_usage(job.user_id, tokens=tokens)
    await _edit(status, ctx.t("eval_done", total=job.total))
    await send(Reply(recommendation_text(report), code=summary_table(report)))
    files = await asyncio.to_thread(lambda: {key: path.read_bytes() for key, path in paths.items()})
    await send(Reply(file=File("chart.png", files["png"], picture=True)))
    for key in ("md", "json"):
        await send(Reply(file=File(paths[key].name, files[key])))


async def _edit(status: Sent, text: str) -> None:
    try:
        await status.edit(text)
    except Exception:  # progress is best effort; the result still follows
        log.info("could not update the evaluation status", exc_info=True)


COMMANDS = [Command("eval", evaluate, who=Role.BOT_ADMIN, menu=False, help_args="(a cases file) [--mode ...]|stop")]
