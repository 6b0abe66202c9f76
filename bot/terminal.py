"""`adaptbot chat`: the terminal adapter of the command layer, over the same chat service (same memory, modes).

Every command works here as in Telegram: choices become a numbered list (type the number), files and pictures
are written under DATA_DIR/out/ and their paths printed. A file goes with a command as `@path` first argument
(`/eval @cases.jsonl --repeats 2`, `/kb_add @handbook.pdf date=2024-05-01`). The terminal's user is a private
chat's owner and, unless `admin=False`, a bot admin (they run the bot's machine).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agents.types import GuardAction, Queued, Sources, TextDelta, Thought, ToolStep
from bot.commands import Choice, Context, Document, Registry, Reply, build_registry
from bot.commands.base import DocumentUnavailable
from bot.feedback import LAST_ANSWER
from bot.handlers.errors import user_message
from bot.i18n import t
from bot.service import Question

if TYPE_CHECKING:
    from bot.app import Services

QUIT = ("/quit", "/exit")
_UNSAFE = re.compile(r"[^\w.-]+")


class Printed:
    """A printed reply; an edit prints the new text (a terminal cannot rewrite what scrolled by)."""

    def __init__(self, out: Callable[[str], None], text: str) -> None:
        self.out, self.text = out, text

    async def edit(self, text: str) -> None:
        if text != self.text:  # progress often repeats itself
            self.text = text
            self.out(text)


class TerminalOutbox:
    """Replies as printed lines; choices numbered (remembered for the next line), files under DATA_DIR/out/."""

    def __init__(self, out: Callable[[str], None], out_dir: Path, lang: str) -> None:
        self.out, self.out_dir, self.lang = out, out_dir, lang
        self.choices: list[Choice] = []

    async def send(self, reply: Reply) -> Printed:
        if reply.code is not None:
            self.out(reply.code)
        if reply.text:
            self.out(reply.text)
        if reply.notice:
            self.out(reply.notice)
        if reply.file is not None:
            path = await asyncio.to_thread(self._write, reply.file.name, reply.file.data)
            self.out(t("file_written", self.lang, path=path))
        if reply.choices:
            self.choices = [choice for row in reply.choices for choice in row]
            for i, choice in enumerate(self.choices, 1):
                self.out(f"  {i}. {choice.label}")
            self.out(t("choose_number", self.lang))
        return Printed(self.out, reply.text)

    def _write(self, name: str, data: bytes) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / (_UNSAFE.sub("_", Path(name).name) or "file")
        path.write_bytes(data)
        return path


def guard_note(event: GuardAction, lang: str) -> str:
    """What the terminal prints after a guard acted (the text before it stays on the screen)."""
    if event.action == "cut":
        return t("guard_loop", lang)
    if event.action == "restart":
        return "---"
    if event.action == "kept":
        return t("guard_language", lang)
    return t("guard_numbers", lang, numbers=", ".join(event.numbers))


def _document(args: str) -> tuple[Document | None, str]:
    """A leading `@path` (or `@"path with spaces"`) argument as the command's file, and the other arguments."""
    if not args.startswith("@"):
        return None, args
    body = args[1:]
    if body[:1] in ("'", '"'):  # a quoted path may hold spaces
        end = body.find(body[0], 1)
        end = len(body) if end < 0 else end
        raw, rest = body[1:end], body[end + 1:]
    else:
        raw, _, rest = body.partition(" ")
    path = Path(raw).expanduser()

    async def read() -> bytes:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise DocumentUnavailable(str(exc)) from None

    size = path.stat().st_size if path.is_file() else None
    return Document(path.name, size, read), rest.strip()


class Terminal:
    """One terminal conversation: runs a line (a command, a number for a choice, or chat) and prints the answer."""

    def __init__(self, services: Services, chat_id: int, lang: str, stdout: TextIO, *, admin: bool = True,
                 user_id: int | None = None, registry: Registry | None = None) -> None:
        self.services, self.chat_id, self.lang, self.stdout = services, chat_id, lang, stdout
        self.admin, self.user_id = admin, chat_id if user_id is None else user_id
        self.registry = registry or build_registry()
        self.outbox = TerminalOutbox(self.out, services.settings.data_dir / "out", lang)

    def out(self, text: str = "", end: str = "\n") -> None:
        self.stdout.write(text + end)
        self.stdout.flush()

    def _context(self, args: str, **more: object) -> Context:
        # no replies in a terminal: a command about "the answer replied to" (/fix) takes the last answer
        return Context(self.services, self.chat_id, self.user_id, "terminal", self.lang, self.outbox, args=args,
                       is_bot_admin=self.admin, ask=self._answer, replied_to=LAST_ANSWER,
                       **more)  # type: ignore[arg-type]

    async def handle(self, text: str) -> None:
        if text.isdigit() and self.outbox.choices:
            await self._choose(int(text))
        elif text.startswith("/"):
            name, _, args = text[1:].partition(" ")
            name = name.split("@")[0].lower()
            if self.registry.get(name) is None:
                self.out(t("unknown_command", self.lang, name=f"/{name}"))
                return
            document, args = _document(args.strip())
            for reply in await self.registry.run(self._context(args, document=document), name):
                await self.outbox.send(reply)
        else:
            await self._answer(text)

    async def _choose(self, n: int) -> None:
        if not 1 <= n <= len(self.outbox.choices):
            self.out(t("no_such_choice", self.lang, n=n))
            return
        choice = self.outbox.choices[n - 1]
        for reply in await self.registry.run(self._context(choice.args, via_choice=True), choice.command):
            await self.outbox.send(reply)

    async def wait_jobs(self) -> None:
        """Wait for the background jobs this conversation started (uploads, an evaluation) to end."""
        tasks: list[asyncio.Task[None]] = []
        knowledge = self.services.knowledge
        if knowledge is not None:
            tasks += knowledge.jobs.tasks()
        current = self.services.eval_jobs.current
        if current is not None and current.task is not None:
            tasks.append(current.task)
        if tasks:
            await asyncio.wait(tasks)

    async def _answer(self, text: str, retry: Question | None = None) -> None:
        chat = self.services.chat
        mode = await chat.get_mode(self.chat_id)
        try:
            async for event in chat.reply(self.chat_id, text, user_id=self.user_id, lang=self.lang, retry=retry):
                if isinstance(event, TextDelta):
                    self.out(event.text, end="")
                elif isinstance(event, ToolStep) and mode.show_steps:
                    self.out(f"[{event.tool}({event.input}) -> {event.output[:200]}]")
                elif isinstance(event, Thought) and mode.show_steps:
                    self.out(f"[{event.text[:200]}]")
                elif isinstance(event, GuardAction):  # printed text cannot be taken back: the verdict follows it
                    self.out("\n" + guard_note(event, self.lang))
                elif isinstance(event, Queued):
                    self.out(t("queued", self.lang, ahead=event.ahead))
                elif isinstance(event, Sources):
                    self.out("\n" + t("sources", self.lang))
                    for s in event.items:
                        page = f", p. {s.page}" if s.page else ""
                        self.out(f"[{s.index}] {s.name}{page}")
            self.out()
        except Exception as exc:  # expected failures are shown; bugs re-raised
            message = user_message(exc, self.lang)
            if message is None:
                raise
            self.out(f"\n{message}")


async def run_terminal(services: Services, chat_id: int, lang: str = "en", stdin: TextIO | None = None,
                       stdout: TextIO | None = None, *, admin: bool = True, user_id: int | None = None,
                       once: str | None = None) -> int:
    """The conversation loop (or, with `once`, one message and its background jobs); returns the exit code."""
    terminal = Terminal(services, chat_id, lang, stdout or sys.stdout, admin=admin, user_id=user_id)
    if once is not None:
        await terminal.handle(once.strip())
        await terminal.wait_jobs()
        return 0
    stdin = stdin or sys.stdin
    mode = await services.chat.get_mode(chat_id)
    terminal.out(t("terminal_banner", lang, chat_id=chat_id, mode=f"{mode.level} · {mode.model}"))
    while True:
        terminal.stdout.write("> ")
        terminal.stdout.flush()
        line = await asyncio.to_thread(stdin.readline)  # never block the event loop on input
        if not line:
            terminal.out()
            return 0
        text = line.strip()
        if text in QUIT:
            return 0
        if text:
            await terminal.handle(text)
