"""Routers, built fresh for each dispatcher, in the order they are tried.

Plain chat comes right after the error handler: its filter (text not starting with "/") matches no command, and
trying it first spares every chat message the checks of all the command filters (measured in bench/bench_bot.py).
Every command, and every button, goes through the command layer's Telegram adapter (`commands.py`).
"""

from __future__ import annotations

from aiogram import Router

from bot.commands import Registry
from bot.handlers import chat, commands, compare, errors, feedback


def build_router(registry: Registry) -> Router:
    root = Router(name="adaptbot")
    root.include_routers(errors.create_router(), chat.create_router(), commands.create_router(registry),
                         feedback.create_router(), compare.create_router())
    return root
