"""Everyone's commands: /start, /help, /mode (text and choices), /reset, /stop, /steps, /usage."""

from __future__ import annotations

import dataclasses

from agents.errors import ModelUnavailableError, UnknownNameError
from bot.commands.base import Choice, Command, Context, Reply, Role
from bot.service import Mode


def mode_label(mode: Mode) -> str:
    return f"{mode.level} · {mode.model}"


async def start(ctx: Context) -> Reply:
    mode = await ctx.services.chat.get_mode(ctx.chat_id)
    return Reply(ctx.t("start", mode=mode_label(mode)))


async def help_(ctx: Context) -> Reply:
    from bot.commands import build_registry

    mode = await ctx.services.chat.get_mode(ctx.chat_id)
    everyone, admin = build_registry().help_lines(ctx.lang, admin=ctx.is_bot_admin)
    extra = "" if ctx.services.settings.search_provider else ctx.t("help_search_off")
    if admin:
        extra += ctx.t("help_admin", commands="\n".join(admin))
    return Reply(ctx.t("help", commands="\n".join(everyone), mode=mode_label(mode), extra=extra))


def mode_menu(ctx: Context, mode: Mode) -> Reply:
    """The /mode menu: a description line per level and model, a choice each with the current ones marked."""
    brain = ctx.services.brain
    lines = [ctx.t("mode_menu", mode=mode_label(mode)), ""]
    rows: list[list[Choice]] = []
    for kind, items, current in (("level", brain.levels.all(), mode.level), ("model", brain.models.all(), mode.model)):
        row: list[Choice] = []
        for name, item in items.items():
            reason = item.unavailable_reason() if kind == "model" else None  # e.g. cloud without OPENAI_API_KEY
            desc = item.description.get(ctx.lang) or item.description.get("en", "")
            if reason:
                desc = f"{desc} ({ctx.t('mode_unavailable', reason=reason)})"
            measured = item.evaluation if kind == "model" else None
            gain = ("  " + ctx.t("mode_gain", gain=f"{measured['gain'] * 100:+.0f}%", cases=measured["cases"])
                    if measured else "")
            lines.append(f"{'•' if name == current else '◦'} {name}{gain} — {desc}")
            mark = "✅ " if name == current else "🚫 " if reason else ""
            row.append(Choice(f"{mark}{name}", "mode", name))
        rows.extend(row[i:i + 3] for i in range(0, len(row), 3))
        lines.append("")
    return Reply("\n".join(lines).strip(), choices=rows)


async def mode(ctx: Context) -> Reply:
    chat = ctx.services.chat
    if not ctx.args.strip():
        return mode_menu(ctx, await chat.get_mode(ctx.chat_id))
    refusal = await ctx.refusal("mode")
    if refusal is not None:
        return refusal
    brain = ctx.services.brain
    try:
        new = await chat.set_mode(ctx.chat_id, ctx.args.split())
    except UnknownNameError as exc:  # a typo, or a stale choice (a fine-tune was removed)
        return Reply(ctx.t("mode_unknown", name=exc.name, levels=", ".join(brain.levels.names()),
                           models=", ".join(brain.models.names())), alert=ctx.via_choice)
    except ModelUnavailableError as exc:
        return Reply(ctx.t("err_unavailable", reason=str(exc)), alert=ctx.via_choice)
    done = ctx.t("mode_set", mode=mode_label(new))
    if ctx.via_choice:  # the menu is redrawn in place with the new marks
        return dataclasses.replace(mode_menu(ctx, new), notice=done)
    return Reply(done)


async def reset(ctx: Context) -> Reply:
    return Reply(ctx.t("reset_done", n=await ctx.services.chat.reset(ctx.chat_id)))


async def stop(ctx: Context) -> Reply | None:
    """Stop the answer running in this chat (in a group: your own, or anyone's for an administrator), and withdraw
    your questions that have not got an answer yet: received before /stop, they are never answered."""
    chat = ctx.services.chat
    refusal = None
    if ctx.is_group and chat.is_busy(ctx.chat_id) and chat.asker(ctx.chat_id) != ctx.user_id:
        refusal = await ctx.refusal("stop", "stop_not_yours")  # someone else's answer: administrators only
    stopped = refusal is None and chat.stop(ctx.chat_id)
    withdrew = await ctx.withdraw() if ctx.withdraw is not None else False
    if stopped:
        return None  # the stopped answer itself ends with the notice
    if withdrew:
        return Reply(ctx.t("stopped"))  # the withdrawn questions end silently
    return refusal or Reply(ctx.t("nothing_to_stop"))


async def steps(ctx: Context) -> Reply:
    arg = ctx.args.strip().lower()
    if arg not in ("on", "off"):
        current = (await ctx.services.chat.get_mode(ctx.chat_id)).show_steps
        return Reply(ctx.t("steps_usage", state=ctx.t("on" if current else "off")))
    refusal = await ctx.refusal("steps")
    if refusal is not None:
        return refusal
    await ctx.services.chat.set_steps(ctx.chat_id, arg == "on")
    return Reply(ctx.t("steps_set", state=ctx.t(arg)))


async def usage(ctx: Context) -> Reply:
    chat = ctx.services.chat
    if ctx.is_bot_admin:
        rows = await chat.usage(None)
        if not rows:
            return Reply(ctx.t("usage_none"))
        return Reply(ctx.t("usage_all", rows="\n".join(f"{uid}: {msgs} / {tokens}" for uid, msgs, tokens in rows)))
    (_, msgs, tokens), = await chat.usage(ctx.user_id)
    quota = f" / {chat.daily_token_quota}" if chat.daily_token_quota else ""
    return Reply(ctx.t("usage_self", messages=msgs, tokens=tokens, quota=quota))


COMMANDS = [
    Command("start", start),
    Command("help", help_),
    Command("mode", mode, help_args="[level] [model]"),
    Command("reset", reset, who=Role.CHAT_ADMIN),
    Command("stop", stop),
    Command("steps", steps, help_args="on|off"),
    Command("usage", usage),
]
