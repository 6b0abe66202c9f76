"""The transport-neutral command layer: what a command is, what it gets (`Context`) and what it answers (`Reply`).

A command knows nothing of Telegram or the terminal. An adapter (`bot/handlers/commands.py` for Telegram,
`bot/terminal.py` for the terminal) builds a `Context`, calls `Registry.run`, and turns the replies into messages,
keyboards, photos and documents, or into printed lines, numbered choices and files under DATA_DIR/out/.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.i18n import t

if TYPE_CHECKING:
    from bot.app import Services


class Role(enum.Enum):
    """Who may run a command; a chat administrator is checked only in groups (a private chat is its user's)."""

    EVERYONE = "everyone"
    CHAT_ADMIN = "chat_admin"
    BOT_ADMIN = "bot_admin"


@dataclass(frozen=True)
class Choice:
    """A button: pressing it runs `command` with `args` (a stale one is handled like typed arguments)."""

    label: str
    command: str
    args: str


@dataclass(frozen=True)
class File:
    """A file to hand to the user; `picture` ones are shown as images where the transport can."""

    name: str
    data: bytes
    picture: bool = False


@dataclass(frozen=True)
class Reply:
    """One plain reply. `code` is shown monospaced before `text`; `alert` marks a refusal (an alert on a button,
    a quoted reply to a message); `notice` is the short confirmation shown when a choice was pressed."""

    text: str = ""
    choices: Sequence[Sequence[Choice]] = ()
    file: File | None = None
    code: str | None = None
    alert: bool = False
    notice: str | None = None


class Sent(Protocol):
    """A reply already shown, which can be replaced later (progress)."""

    async def edit(self, text: str) -> None: ...


class Outbox(Protocol):
    """Where a command's later replies go (background jobs: progress, results)."""

    async def send(self, reply: Reply) -> Sent: ...


class DocumentUnavailable(Exception):
    """The attached file could not be fetched from the transport."""


@dataclass
class Document:
    """A file that came with the command (a Telegram document, a terminal `@path`)."""

    name: str
    size: int | None
    read: Callable[[], Awaitable[bytes]]  # raises DocumentUnavailable


class AdminCheckFailed(Exception):
    """The transport could not say whether the user administers the group."""


async def _no_group(_: object = None) -> bool:
    return False


@dataclass
class Context:
    """One command call: who, where, with what; and where later replies go."""

    services: Services
    chat_id: int
    user_id: int
    user_name: str
    lang: str
    outbox: Outbox
    args: str = ""
    is_group: bool = False
    is_bot_admin: bool = False
    document: Document | None = None
    via_choice: bool = False
    # whether the user administers this group (bot admins are, too); raises AdminCheckFailed
    is_chat_admin: Callable[[], Awaitable[bool]] = field(default=_no_group)
    # answer a question in this chat as a chat turn, streamed by the adapter (`/retry`): ask(text, retry=question)
    ask: Callable[..., Awaitable[None]] | None = None
    # the bot's message this command replies to (`/fix`): its transport id; bot.feedback.LAST_ANSWER where the
    # transport has no replies (the terminal: the chat's last answer); None when it replies to nothing of the bot's
    replied_to: int | None = None
    replied_to_other: bool = False  # it replies to a message that is not the bot's
    # /stop: withdraw the sender's questions in this chat that came before this command and whose answer has not
    # begun (they are never answered); True when there was one. None: nothing queues (the terminal)
    withdraw: Callable[[], Awaitable[bool]] | None = None

    def t(self, key: str, **params: object) -> str:
        return t(key, self.lang, **params)

    async def refusal(self, command: str, key: str = "group_admin_only") -> Reply | None:
        """None when the user may change this chat's settings; otherwise the refusal (or a "try again")."""
        if not self.is_group or self.is_bot_admin:
            return None
        try:
            if await self.is_chat_admin():
                return None
            return Reply(self.t(key, command=command), alert=True)
        except AdminCheckFailed:
            return Reply(self.t("admin_check_failed"), alert=True)


Answer = Reply | list[Reply] | None
Handler = Callable[[Context], Awaitable[Answer]]


@dataclass(frozen=True)
class Command:
    """A command: its name (without "/"), who may run it, its handler, and whether the menu lists it."""

    name: str
    handler: Handler
    who: Role = Role.EVERYONE
    menu: bool = True  # listed in Telegram's command menu (bot-admin commands never are)
    help_args: str = ""  # shown after the name in /help, e.g. "on|off"

    def help(self, lang: str) -> str:
        """The one-line help, from i18n key `cmd_<name>`."""
        return t(f"cmd_{self.name}", lang)


class Registry:
    """The commands by name, in the order /help and the menu list them."""

    def __init__(self, commands: Sequence[Command] = ()) -> None:
        self._commands: dict[str, Command] = {}
        for command in commands:
            self.add(command)

    def add(self, command: Command) -> None:
        if command.name in self._commands:
            raise ValueError(f"command /{command.name} is defined twice")
        self._commands[command.name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self) -> list[str]:
        return list(self._commands)

    def all(self) -> list[Command]:
        return list(self._commands.values())

    def help_lines(self, lang: str, *, admin: bool) -> tuple[list[str], list[str]]:
        """(everyone's lines, bot-admin lines) for /help."""
        lines: tuple[list[str], list[str]] = ([], [])
        for c in self._commands.values():
            name = f"/{c.name} {c.help_args}".rstrip()
            lines[c.who is Role.BOT_ADMIN].append(f"{name} — {c.help(lang)}")
        return lines[0], lines[1] if admin else []

    async def run(self, ctx: Context, name: str) -> list[Reply]:
        """Check who may run it, then run it; the replies, in order (empty when there is nothing to say)."""
        command = self._commands[name]
        if command.who is Role.BOT_ADMIN and not ctx.is_bot_admin:
            return [Reply(ctx.t("admin_only"))]
        if command.who is Role.CHAT_ADMIN:
            refusal = await ctx.refusal(name)
            if refusal is not None:
                return [refusal]
        answer = await command.handler(ctx)
        if answer is None:
            return []
        return answer if isinstance(answer, list) else [answer]
