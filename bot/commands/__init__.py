"""Every command of the bot, defined once for Telegram and the terminal.

Where a command lives: `bot/commands/<group>.py`, listed in that module's COMMANDS; the name is the string in
`Command("name", ...)`. Groups: chat (everyone's), guards (/retry, /lang, /guards), admin (/prompt), kb (knowledge
base), evaluation (/eval), feedback (/fix, /feedback, /export), compare (/compare, /leaderboard).
"""

from __future__ import annotations

from bot.commands import admin, chat, compare, evaluation, feedback, guards, kb
from bot.commands.base import Choice, Command, Context, Document, File, Registry, Reply, Role

__all__ = ["Choice", "Command", "Context", "Document", "File", "Registry", "Reply", "Role", "build_registry"]


def build_registry() -> Registry:
    """All commands, in the order /help and the menu list them."""
    return Registry([*chat.COMMANDS, *guards.COMMANDS, *compare.COMMANDS, *admin.COMMANDS, *kb.COMMANDS,
                     *evaluation.COMMANDS, *feedback.COMMANDS])
