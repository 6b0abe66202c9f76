"""/compare (side by side; group admins change it in groups) and /leaderboard (everyone; `reset`: bot admins)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from agents.errors import ModelUnavailableError, UnknownNameError
from bot.commands.base import Choice, Command, Context, File, Reply
from bot.service import Mode, ServiceError
from bot.storage import repo

if TYPE_CHECKING:
    from evals.leaderboard import Rating


def label(mode: Mode) -> str:
    return f"{mode.level} · {mode.model}"


def _modes(ctx: Context) -> list[Mode]:
    """Every mode the chat could compare (models that cannot answer as configured left out), in menu order."""
    brain = ctx.services.brain
    models = [name for name, m in brain.models.all().items() if not m.unavailable_reason()]
    return [Mode(level, model) for model in models for level in brain.levels.names()]


def _state(ctx: Context, modes: tuple[Mode, Mode] | None) -> str:
    return ctx.t("compare_state", a=label(modes[0]), b=label(modes[1])) if modes else ctx.t("compare_state_off")


def _menu(ctx: Context, current: tuple[Mode, Mode] | None, first: int | None = None) -> Reply:
    """The pick-two menu; a button's arguments are indexes into `_modes` ("#3", then "#3 #5"): short enough for
    Telegram's 64 bytes whatever the model names."""
    modes = _modes(ctx)
    if first is None:
        text = ctx.t("compare_pick_a", state=_state(ctx, current))
        choices = [Choice(label(m), "compare", f"#{i}") for i, m in enumerate(modes)]
    else:
        text = ctx.t("compare_pick_b", a=label(modes[first]))
        choices = [Choice(label(m), "compare", f"#{first} #{i}") for i, m in enumerate(modes) if i != first]
    rows = [choices[i:i + 2] for i in range(0, len(choices), 2)]
    if current and first is None:
        rows.append([Choice(ctx.t("compare_off_button"), "compare", "off")])
    return Reply(text, choices=rows)


def _picked(ctx: Context, args: str) -> list[Mode] | None:
    """The modes a menu button names ("#i" or "#i #j"); None for a stale button (the list changed)."""
    modes = _modes(ctx)
    picked = []
    for token in args.split():
        index = repo.parse_id(token[1:])
        if index is None or index >= len(modes):
            return None
        picked.append(modes[index])
    return picked


async def compare(ctx: Context) -> Reply:
    service = ctx.services.compare
    args = ctx.args.strip()
    if not args:
        return _menu(ctx, await service.get(ctx.chat_id))
    picked: list[Mode] | None = None
    if args.startswith("#"):
        picked = _picked(ctx, args)
        if picked is None:
            return Reply(ctx.t("compare_stale"), alert=ctx.via_choice)
        if len(picked) == 1:
            return _menu(ctx, None, first=_modes(ctx).index(picked[0]))
    refusal = await ctx.refusal("compare")
    if refusal is not None:
        return refusal
    if args.lower() == "off":
        await service.set(ctx.chat_id, None)
        return Reply(ctx.t("compare_off"))
    try:
        if picked is not None:  # the menu's second button; typed or forged, it may name one mode twice
            if len(picked) != 2:
                raise ServiceError("compare_usage")
            if picked[0] == picked[1]:
                raise ServiceError("compare_same")
            modes = (picked[0], picked[1])
        else:
            modes = service.parse(args, await ctx.services.chat.get_mode(ctx.chat_id))
    except UnknownNameError as exc:
        brain = ctx.services.brain
        return Reply(ctx.t("mode_unknown", name=exc.name, levels=", ".join(brain.levels.names()),
                           models=", ".join(brain.models.names())), alert=ctx.via_choice)
    except ModelUnavailableError as exc:
        return Reply(ctx.t("err_unavailable", reason=str(exc)), alert=ctx.via_choice)
    except ServiceError as exc:
        return Reply(ctx.t(exc.code), alert=ctx.via_choice)
    await service.set(ctx.chat_id, modes)
    done = Reply(ctx.t("compare_set", a=label(modes[0]), b=label(modes[1])))
    return dataclasses.replace(done, notice=ctx.t("compare_state", a=label(modes[0]), b=label(modes[1]))) \
        if ctx.via_choice else done


async def leaderboard(ctx: Context) -> Reply | list[Reply]:
    from evals.leaderboard import fit_ratings, table

    db = ctx.services.db
    arg = ctx.args.strip().lower()
    if arg == "reset":
        if not ctx.is_bot_admin:
            return Reply(ctx.t("admin_only"), alert=True)
        return Reply(ctx.t("leaderboard_reset", season=await db.run(repo.new_season)))
    if arg:
        return Reply(ctx.t("leaderboard_usage"))

    def read(s: Session) -> tuple[int, list[tuple[str, str, str]]]:
        season = repo.current_season(s)
        return season, repo.vote_outcomes(s, season=season)

    season, outcomes = await db.run(read)
    ratings = await asyncio.to_thread(fit_ratings, outcomes)  # numpy: 200 bootstrap fits, off the event loop
    if not ratings:
        return Reply(ctx.t("leaderboard_empty", season=season))
    replies = [Reply(ctx.t("leaderboard_head", season=season, votes=len(outcomes)), code=table(ratings, ctx.lang))]
    if ctx.is_bot_admin:
        replies.append(Reply(file=File("leaderboard.png", await asyncio.to_thread(_chart_png, ratings),
                                       picture=True)))
    return replies


def _chart_png(ratings: list[Rating]) -> bytes:
    from evals.leaderboard import chart

    with tempfile.TemporaryDirectory() as tmp:
        return chart(ratings, Path(tmp) / "leaderboard.png").read_bytes()


COMMANDS = [
    Command("compare", compare, help_args="[MODE | MODE|off]"),
    Command("leaderboard", leaderboard, help_args="[reset]"),
]
