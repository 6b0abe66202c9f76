"""Feedback commands: /fix (everyone: correct the answer replied to), /feedback and /export (bot admins)."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import tempfile
from pathlib import Path

from bot.commands.base import Command, Context, File, Reply, Role
from bot.feedback import PERIODS, FeedbackReport, FeedbackStore
from bot.storage.repo import ModeCounts

CAPTION_LIMIT = 1024  # Telegram's caption length
UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may send as a document


async def fix(ctx: Context) -> Reply:
    """`/fix <better answer>` in reply to an answer: the pair is kept and the correction replaces it in memory."""
    text = ctx.args.strip()
    if ctx.replied_to is None:
        return Reply(ctx.t("fix_not_bot" if ctx.replied_to_other else "fix_usage"))
    if not text:
        return Reply(ctx.t("fix_empty"))
    limit = ctx.services.settings.max_input_chars
    if len(text) > limit:
        return Reply(ctx.t("err_input_too_long", limit=limit, got=len(text)))
    system_prompt, _ = await ctx.services.chat.system_prompt()
    done = await FeedbackStore(ctx.services.db).correct(ctx.chat_id, ctx.replied_to, ctx.user_id, text,
                                                        system_prompt=system_prompt)
    if done is None:
        return Reply(ctx.t("fix_gone"))
    return Reply(ctx.t("fix_done"))


def _row(ctx: Context, mode: str, c: ModeCounts) -> str:
    reasons = ", ".join(f"{ctx.t(f'fb_reason_{r}') if r != 'unspecified' else ctx.t('fb_no_reason')} {n}"
                        for r, n in sorted(c.down.items()))
    down = f"👎 {c.down_total}" + (f" ({reasons})" if reasons else "")
    return ctx.t("feedback_row", mode=mode, up=c.up, down=down, corrections=c.corrections, votes=c.votes)


def feedback_text(ctx: Context, report: FeedbackReport) -> str:
    """The /feedback reply: per mode and period 👍, 👎 by reason, corrections, votes; then the guard events."""
    parts = []
    for days in PERIODS:
        counts = report.periods[days]
        rows = [_row(ctx, mode, c) for mode, c in counts.items()] or [ctx.t("feedback_none")]
        parts.append("\n".join([ctx.t("feedback_period", days=days), *rows]))
    if report.guards:
        rows = [f"{mode}: " + ", ".join(f"{event} × {n}" for event, n in sorted(events.items()))
                for mode, events in sorted(report.guards.items())]
        parts.append("\n".join([ctx.t("feedback_guards"), *rows]))
    return "\n\n".join(parts)


async def feedback(ctx: Context) -> Reply:
    return Reply(feedback_text(ctx, await FeedbackStore(ctx.services.db).report()))


def _usage(ctx: Context, reason: str = "") -> Reply:
    return Reply(ctx.t("export_usage", reason=reason).rstrip())


async def export(ctx: Context) -> Reply:
    """`/export sft|dpo|kto [flags of adaptbot dataset export]`: the file comes back as a document."""
    from bot.dataset import EmptyExport, ExportOptions, FlagsRefused, export_dataset, export_parser, load_salt

    if ctx.is_group:  # the file would show every chat's conversations to all the group's members
        return Reply(ctx.t("export_private"))
    try:
        words = shlex.split(ctx.args)
    except ValueError as exc:
        return _usage(ctx, str(exc))
    if not words or words[0] not in ("sft", "dpo", "kto"):
        return _usage(ctx)
    try:  # the CLI's own flags and checks; --out is ours
        args = export_parser().parse_args(["export", "--kind", words[0], "--out", "-", *words[1:]])
    except FlagsRefused as exc:
        return _usage(ctx, str(exc))
    if args.min_votes < 1:
        return _usage(ctx, "(--min-votes ≥ 1)")
    options = ExportOptions(kind=args.kind, since=args.since, mode=args.mode, min_votes=args.min_votes,
                            lang=args.lang, keep_flagged=args.keep_flagged)
    settings = ctx.services.settings
    configured = settings.dataset_salt.get_secret_value() if settings.dataset_salt else None
    salt = await asyncio.to_thread(load_salt, settings.data_dir, configured)
    tmp = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="adaptbot-export-"))  # only until it is sent
    try:
        path = tmp / f"{args.kind}.jsonl"
        try:
            result = await export_dataset(ctx.services.db, options, path, salt=salt)
        except EmptyExport:
            return Reply(ctx.t("export_empty", kind=args.kind))
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        if size > UPLOAD_LIMIT:
            return Reply(ctx.t("export_too_large", size=size // 2**20))
        data = await asyncio.to_thread(path.read_bytes)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
    lines = [ctx.t("export_caption", kind=result.kind, n=result.written)]
    lines += [f"{mode}: {n}" for mode, n in sorted(result.per_mode.items())]
    lines += [f"{ctx.t('export_from')} {source}: {n}" for source, n in sorted(result.per_source.items())]
    lines += [f"{ctx.t('export_left_out')} ({why}): {n}" for why, n in sorted(result.skipped.items())]
    caption = "\n".join(lines)
    if len(caption) > CAPTION_LIMIT:
        caption = caption[:CAPTION_LIMIT - 1] + "…"
    return Reply(caption, file=File(f"{args.kind}.jsonl", data))


COMMANDS = [
    Command("fix", fix, menu=False, help_args="<better answer>"),
    Command("feedback", feedback, who=Role.BOT_ADMIN, menu=False),
    Command("export", export, who=Role.BOT_ADMIN, menu=False,
            help_args='sft|dpo|kto [--since DATE] [--mode "LEVEL MODEL"] [--min-votes N] [--lang ru|en]'),
]
