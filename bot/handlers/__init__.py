"""Routers, built fresh for each dispatcher, in the order they are tried.

Plain chat comes right after the error handler: its filter (text not starting with "/") matches no command, and
trying it first spares every chat message the checks of all the command filters (measured in bench/bench_bot.py).
"""

from __future__ import annotations

from aiogram import Router

from bot.handlers import admin, chat, errors, evaluation, guards, mode, start


def build_router() -> Router:
    root = Router(name="adaptbot")
    root.include_routers(errors.create_router(), chat.create_router(), start.create_router(),
                         mode.create_router(), admin.create_router(), evaluation.create_router(),
                         guards.create_router())
    try:
        from bot.handlers import kb  # the knowledge-base handlers, when that part is installed
    except ImportError:  # pragma: no cover
        kb = None  # type: ignore[assignment]
    if kb is not None:
        root.include_router(kb.create_router())
    root.include_router(admin.create_refusals())
    return root
