"""Every command of the bot, defined once for Telegram and the terminal.

Where a command lives: `bot/commands/<group>.py`, listed in that module's COMMANDS; the name is the string in
`Command("name", ...)`. Groups: chat (everyone's), admin (/prompt), kb (knowledge base), evaluation (/eval).
"""

from __future__ import annotations

from bot.commands import admin, chat, evaluation
from bot.commands.base import Choice, Command, Context, Document, File, Reply, Role
from bot.commands.base import Registry as Registry

__all__ = ["Choice", "Command", "Context", "Document", "File", "Registry", "Reply", "Role", "build_registry"]


def build_registry() -> Registry:
    """All commands, in the order /help and the menu list them."""
    commands = [*chat.COMMANDS, *admin.COMMANDS]
    try:
        from bot.commands import kb  # the knowledge-base commands, when that part is installed
    except ImportError:  # pragma: no cover
        pass
    else:
        commands += kb.COMMANDS
    commands += evaluation.COMMANDS
    return Registry(commands)
