"""/retry (everyone), /lang ru|en|auto (group admins in groups), /guards (bot admins): thin over ChatService."""

from __future__ import annotations

from bot.commands.base import Command, Context, Reply, Role
from bot.service import ChatGuards, ServiceError


def guards_text(ctx: Context, state: ChatGuards, counts: list[tuple[str, str, str, int]]) -> str:
    """The /guards reply: this chat's switches and language, and the guard events counted per mode."""
    rows = "\n".join(f"{level} · {model}: {event} × {n}" for level, model, event, n in counts)
    return ctx.t("guards_state", loops=ctx.t("on" if state.loops else "off"),
                 language=ctx.t("on" if state.language else "off"), numbers=ctx.t("on" if state.numbers else "off"),
                 chat_lang=state.lang or ctx.t("lang_auto"), counts=ctx.t("guards_counts", rows=rows) if rows else "")


async def retry(ctx: Context) -> Reply | None:
    question = await ctx.services.chat.last_question(ctx.chat_id)
    if question is None:
        return Reply(ctx.t("retry_nothing"))
    assert ctx.ask is not None, "the adapter answers questions"
    await ctx.ask(question.text, retry=question)
    return None


async def lang(ctx: Context) -> Reply:
    chat = ctx.services.chat
    arg = ctx.args.strip()
    if arg:
        refusal = await ctx.refusal("lang")
        if refusal is not None:
            return refusal
        try:
            state = await chat.set_lang(ctx.chat_id, arg)
        except ServiceError as exc:
            return Reply(ctx.t(f"err_{exc.code}", **exc.params))
    else:
        state = await chat.guards(ctx.chat_id)
    return Reply(ctx.t("lang_state", chat_lang=state.lang or ctx.t("lang_auto")))


async def guards(ctx: Context) -> Reply:
    chat = ctx.services.chat
    name, _, value = ctx.args.strip().partition(" ")
    value = value.strip().lower()
    if name and value in ("on", "off"):
        try:
            await chat.set_guard(ctx.chat_id, name, value == "on")
        except ServiceError as exc:
            return Reply(ctx.t(f"err_{exc.code}", **exc.params))
        return Reply(ctx.t("guard_set", name=name.lower(), state=ctx.t(value)))
    return Reply(guards_text(ctx, await chat.guards(ctx.chat_id), await chat.guard_counts()))


COMMANDS = [
    Command("retry", retry),
    Command("lang", lang, help_args="ru|en|auto"),
    Command("guards", guards, who=Role.BOT_ADMIN, help_args="[loops|language|numbers on|off]"),
]
