"""Bot-admin commands: /prompt (show, set, reset)."""

from __future__ import annotations

from bot.commands.base import Command, Context, Reply, Role


async def prompt(ctx: Context) -> Reply:
    chat = ctx.services.chat
    args = ctx.args.strip()
    if not args:
        text, custom = await chat.system_prompt()
        return Reply(ctx.t("prompt_show", origin=ctx.t("prompt_custom" if custom else "prompt_default"), text=text))
    action, _, rest = args.partition(" ")
    if action == "set" and rest.strip():
        await chat.set_system_prompt(rest)
        return Reply(ctx.t("prompt_set"))
    if action == "reset":
        await chat.set_system_prompt(None)
        return Reply(ctx.t("prompt_reset"))
    return Reply(ctx.t("prompt_usage"))


COMMANDS = [Command("prompt", prompt, who=Role.BOT_ADMIN, menu=False, help_args="[set <text>|reset]")]
