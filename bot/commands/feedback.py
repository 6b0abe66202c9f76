"""Feedback commands: /fix (everyone: correct the answer replied to)."""

from __future__ import annotations

from bot.commands.base import Command, Context, Reply
from bot.feedback import FeedbackStore


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


COMMANDS = [
    Command("fix", fix, menu=False, help_args="<better answer>"),
]
