"""A fake Telegram Bot API server on loopback: the network edge of every bot test.

The real bot (aiogram Bot + AiohttpSession + our dispatcher) talks to it over HTTP through TELEGRAM_API_BASE.
Tests put user updates in (`user_says`, `press_button`, `send_document`) and read what the user would see
(`texts(chat_id)`, `messages(chat_id)`), waiting on conditions rather than sleeping (`wait_for`).
It enforces what Telegram enforces: non-empty text, 4096 UTF-16 units, entities inside the text, parse_mode
validity for HTML, and can inject faults (429 with retry_after, 5xx) on chosen methods.
"""

from __future__ import annotations

import asyncio
import html.parser
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 777000
BOT_USERNAME = "adapt_test_bot"


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class SentMessage:
    chat_id: int
    message_id: int
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    reply_to: int | None = None
    edits: int = 0
    deleted: bool = False


@dataclass
class FaultPlan:
    """Faults on chosen methods: a fraction answered 429 (retry_after drawn from a range) and a fraction 5xx."""

    methods: set[str]
    rate_429: float = 0.0
    retry_after: tuple[int, int] = (1, 3)
    rate_5xx: float = 0.0
    status_5xx: int = 502
    html_5xx: bool = False  # answer the 5xx with an HTML page (a proxy), not Telegram's JSON
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)


@dataclass
class SentFile:
    """A photo or document the bot sent (multipart upload)."""

    chat_id: int
    message_id: int
    kind: str  # "photo" | "document"
    name: str
    content: bytes
    caption: str | None = None


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-token-abcdefghijklmnop") -> None:
        self.token = token
        self.port = 0
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.chats: dict[int, list[SentMessage]] = {}
        self.drafts: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.file_downloads = 0
        self.sent_files: list[SentFile] = []  # photos and documents the bot sent, in order
        self.faults: FaultPlan | None = None
        self.fault_log: list[tuple[str, int]] = []  # (method, status) of every injected fault
        self.drafts_supported = True
        self.fail_entities_once = False  # reject the next text with entities ("can't parse entities")
        # method -> how many of its next calls are carried out and then answered only after `stall_seconds` (or
        # never, if the server stops first): Telegram took the message, its answer got lost on the way back
        self.stall_after_accept: dict[str, int] = {}
        # (method, params) -> True: the call is held and never carried out (the connection died before Telegram
        # read it all); it is answered 502 when the server stops
        self.swallow: Callable[[str, dict[str, Any]], bool] | None = None
        self.stall_seconds = 30.0
        self.webhook: dict[str, Any] | None = None
        self.chat_admins: dict[int, set[int]] = {}  # group chat id -> its administrators' user ids (getChatMember)
        self._updates: list[dict[str, Any]] = []
        self.served: list[int] = []  # update ids handed out by getUpdates (again each time until confirmed)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._closing = False
        # webhook delivery: after setWebhook, updates are POSTed (like Telegram does) instead of queued for getUpdates
        self.webhook_targets: list[str] = []  # deliver here instead of the set URL: a load balancer picks one
        self.webhook_duplicate_rate = 0.0  # this fraction of updates goes to every target at once (redelivery)
        self.webhook_rng = random.Random(0)
        self.webhook_deliveries: list[tuple[int, str, int]] = []  # (update_id, url, HTTP status; 0: no connection)
        self.webhook_delivered: set[int] = set()  # update ids some target answered 2xx
        self._delivery_queues: dict[Any, asyncio.Queue[dict[str, Any]]] = {}
        self._delivery_tasks: set[asyncio.Task[None]] = set()
        self._client: Any = None
        # slow Telegram on demand: requests a hold selects wait until its gate opens (see `hold`)
        self._holds: list[tuple[Callable[[str, dict[str, Any]], bool], asyncio.Event]] = []
        self.held: list[tuple[str, dict[str, Any]]] = []

    # --- lifecycle ----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._closing = True
        for _, gate in self._holds:
            gate.set()
        await self._notify()  # long polls in progress return now
        for task in list(self._delivery_tasks):
            task.cancel()
        await asyncio.gather(*self._delivery_tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what users do ------------------------------------------------------------------------------
    def _user(self, user_id: int, lang: str) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"U{user_id}", "language_code": lang}

    def _chat(self, chat_id: int, chat_type: str) -> dict[str, Any]:
        if chat_type == "private":
            return {"id": chat_id, "type": "private", "first_name": f"U{chat_id}"}
        return {"id": chat_id, "type": chat_type, "title": f"Group {chat_id}"}

    def push_update(self, update: dict[str, Any]) -> int:
        update.setdefault("update_id", next(self._update_ids))
        if self.webhook is not None:
            self._deliver(update)
            return int(update["update_id"])
        self._updates.append(update)
        asyncio.get_event_loop().create_task(self._notify())
        return int(update["update_id"])

    # --- webhook delivery ---------------------------------------------------------------------------
    def _deliver(self, update: dict[str, Any]) -> None:
        """Queue for POSTing; one chat's updates go out one at a time, each after the previous got a 2xx."""
        key = _chat_of(update)
        queue = self._delivery_queues.get(key)
        if queue is None:
            queue = self._delivery_queues[key] = asyncio.Queue()
            task = asyncio.get_event_loop().create_task(self._delivery_loop(queue))
            self._delivery_tasks.add(task)
            task.add_done_callback(self._delivery_tasks.discard)
        queue.put_nowait(update)

    async def _delivery_loop(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        import aiohttp

        if self._client is None:
            self._client = aiohttp.ClientSession()
        while True:
            update = await queue.get()
            while not self._closing:
                assert self.webhook is not None
                targets = self.webhook_targets or [self.webhook["url"]]
                if len(targets) > 1 and self.webhook_rng.random() < self.webhook_duplicate_rate:
                    chosen = list(targets)
                else:
                    chosen = [self.webhook_rng.choice(targets)]
                headers = {}
                if self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = str(self.webhook["secret_token"])
                statuses = await asyncio.gather(*(self._post(url, update, headers) for url in chosen))
                if any(200 <= code < 300 for code in statuses):
                    self.webhook_delivered.add(int(update["update_id"]))
                    await self._notify()
                    break
                await asyncio.sleep(0.2)  # Telegram tries again later

    async def _post(self, url: str, update: dict[str, Any], headers: dict[str, str]) -> int:
        import aiohttp

        try:
            async with self._client.post(url, json=update, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        self.webhook_deliveries.append((int(update["update_id"]), url, status))
        return status

    def user_says(self, chat_id: int, text: str, *, user_id: int | None = None, lang: str = "en",
                  chat_type: str | None = None, reply_to_bot: int | None = None,
                  entities: list[dict[str, Any]] | None = None, update_id: int | None = None) -> int:
        """A user sends `text`; returns the update id. Commands get their bot_command entity like in Telegram."""
        user_id = user_id if user_id is not None else abs(chat_id)
        chat_type = chat_type or ("private" if chat_id > 0 else "group")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": self._chat(chat_id, chat_type), "from": self._user(user_id, lang), "text": text,
        }
        ents = list(entities or [])
        if text.startswith("/"):
            ents.append({"type": "bot_command", "offset": 0, "length": utf16_len(text.split(" ")[0])})
        at = text.find(f"@{BOT_USERNAME}")
        if at >= 0 and not text.startswith("/"):
            ents.append({"type": "mention", "offset": utf16_len(text[:at]), "length": len(BOT_USERNAME) + 1})
        if ents:
            message["entities"] = ents
        if reply_to_bot is not None:
            original = self.find(chat_id, reply_to_bot)
            message["reply_to_message"] = {
                "message_id": reply_to_bot, "date": int(time.time()), "chat": self._chat(chat_id, chat_type),
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot", "username": BOT_USERNAME},
                "text": original.text if original else "",
            }
        update = {"message": message}
        if update_id is not None:
            update["update_id"] = update_id
        return self.push_update(update)

    def press_button(self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None,
                     lang: str = "en") -> int:
        msg = self.find(chat_id, message_id)
        user_id = user_id if user_id is not None else abs(chat_id)
        return self.push_update({"callback_query": {
            "id": str(random.randint(1, 10**9)), "from": self._user(user_id, lang), "chat_instance": "ci",
            "data": data, "message": {"message_id": message_id, "date": int(time.time()),
                                      "chat": self._chat(chat_id, "private" if chat_id > 0 else "group"),
                                      "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"},
                                      "text": msg.text if msg else ""}}})

    def send_document(self, chat_id: int, content: bytes, file_name: str, *, user_id: int | None = None,
                      caption: str | None = None, mime_type: str = "application/octet-stream",
                      lang: str = "en", claimed_size: int | None = None) -> int:
        file_id = f"file{len(self.files) + 1}"
        self.files[file_id] = content
        user_id = user_id if user_id is not None else abs(chat_id)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": self._chat(chat_id, "private" if chat_id > 0 else "group"), "from": self._user(user_id, lang),
            "document": {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": file_name,
                         "mime_type": mime_type,
                         "file_size": claimed_size if claimed_size is not None else len(content)},
        }
        if caption:
            message["caption"] = caption
            if caption.startswith("/"):
                message["caption_entities"] = [{"type": "bot_command", "offset": 0,
                                                "length": utf16_len(caption.split(" ")[0])}]
        return self.push_update({"message": message})

    # --- what the user sees -------------------------------------------------------------------------
    def messages(self, chat_id: int) -> list[SentMessage]:
        return [m for m in self.chats.get(chat_id, []) if not m.deleted]

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.messages(chat_id)]

    def find(self, chat_id: int, message_id: int) -> SentMessage | None:
        return next((m for m in self.chats.get(chat_id, []) if m.message_id == message_id), None)

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until `predicate()` is truthy (re-checked on every request the bot makes)."""
        async def _wait() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result
        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"condition not met in {timeout} s; chats: "
                                 f"{ {c: [m.text[:80] for m in ms] for c, ms in self.chats.items()} }") from None

    async def wait_texts(self, chat_id: int, count: int, timeout: float = 20.0) -> list[str]:
        """Wait until the chat shows `count` messages and none of them is still a streaming preview."""
        await self.wait_for(lambda: len(self.messages(chat_id)) >= count, timeout)
        return self.texts(chat_id)

    def hold(self, match: Callable[[str, dict[str, Any]], bool]) -> asyncio.Event:
        """Answer the requests `match(method, params)` selects only once the returned event is set; each is listed
        in `held` when it arrives. A file download is the method "file" with params {"file_id": ...}."""
        gate = asyncio.Event()
        self._holds.append((match, gate))
        return gate

    async def _wait_hold(self, method: str, params: dict[str, Any]) -> None:
        for match, gate in self._holds:
            if not gate.is_set() and match(method, params):
                self.held.append((method, params))
                await self._notify()
                await gate.wait()
                return

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the API ------------------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        data = await request.post()
        params: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and key.endswith("_id") and value.lstrip("-").isdigit():
                params[key] = int(value)
            elif isinstance(value, str):
                try:
                    params[key] = json.loads(value) if value[:1] in "[{" or value in ("true", "false") else value
                except json.JSONDecodeError:
                    params[key] = value
            else:
                params[key] = value
        return params

    def _fail(self, code: int, description: str, **extra: Any) -> web.Response:
        body = {"ok": False, "error_code": code, "description": description}
        if extra:
            body["parameters"] = extra
        return web.json_response(body, status=code)

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._fail(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        if method != "getUpdates":
            self.calls.append((method, params))
        try:
            await self._wait_hold(method, params)
            if self.swallow is not None and self.swallow(method, params):
                self.held.append((method, params))
                await self._notify()
                while not self._closing:
                    await asyncio.sleep(0.05)
                return self._fail(502, "Bad Gateway")
            plan = self.faults
            if plan is not None and method in plan.methods:
                roll = plan._rng.random()
                if roll < plan.rate_429:
                    after = plan._rng.randint(*plan.retry_after)
                    self.fault_log.append((method, 429))
                    return self._fail(429, f"Too Many Requests: retry after {after}", retry_after=after)
                if roll < plan.rate_429 + plan.rate_5xx:
                    self.fault_log.append((method, plan.status_5xx))
                    if plan.html_5xx:  # what a proxy in front of Telegram sends: a page, not JSON
                        return web.Response(status=plan.status_5xx, text="<html><body>502 Bad Gateway</body></html>",
                                            content_type="text/html")
                    return self._fail(plan.status_5xx, "Bad Gateway")
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return web.json_response({"ok": True, "result": True})
            result = await handler(params)
            if self.stall_after_accept.get(method, 0) > 0:
                self.stall_after_accept[method] -= 1
                self.fault_log.append((method, 0))
                await self._notify()
                deadline = time.monotonic() + self.stall_seconds
                while not self._closing and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            if isinstance(result, web.Response):
                return result
            return web.json_response({"ok": True, "result": result})
        finally:
            await self._notify()

    def _bot_user(self) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "Adapt", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self._bot_user()

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones are gone
        deadline = time.monotonic() + min(timeout, 5)
        while not self._updates and time.monotonic() < deadline and not self._closing:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    break
        batch = list(self._updates[:100])
        self.served.extend(u["update_id"] for u in batch)
        return batch

    def _check_text(self, text: Any, entities: Any, parse_mode: Any) -> web.Response | None:
        if not isinstance(text, str) or not text.strip():
            return self._fail(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            return self._fail(400, "Bad Request: message is too long")
        if entities:
            if self.fail_entities_once:
                self.fail_entities_once = False
                return self._fail(400, "Bad Request: can't parse entities: unsupported entity")
            size = utf16_len(text)
            for e in entities:
                if e["offset"] < 0 or e["length"] <= 0 or e["offset"] + e["length"] > size:
                    return self._fail(400, "Bad Request: can't parse entities: entity out of bounds")
        if parse_mode == "HTML":
            try:
                _StrictHTML().feed(text)
            except ValueError as exc:
                return self._fail(400, f"Bad Request: can't parse entities: {exc}")
        elif parse_mode in ("Markdown", "MarkdownV2"):
            return self._fail(400, "Bad Request: this fake refuses Markdown parse modes; send entities")
        return None

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        error = self._check_text(params.get("text"), params.get("entities"), params.get("parse_mode"))
        if error:
            return error
        chat_id = int(params["chat_id"])
        reply = params.get("reply_parameters") or {}
        msg = SentMessage(chat_id, next(self._message_ids), params["text"], params.get("entities") or [],
                          params.get("reply_markup"), reply.get("message_id") or params.get("reply_to_message_id"))
        self.chats.setdefault(chat_id, []).append(msg)
        return self._message_json(msg)

    def _message_json(self, msg: SentMessage) -> dict[str, Any]:
        chat_type = "private" if msg.chat_id > 0 else "group"
        return {"message_id": msg.message_id, "date": int(time.time()), "text": msg.text,
                "chat": self._chat(msg.chat_id, chat_type), "from": self._bot_user()}

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        error = self._check_text(params.get("text"), params.get("entities"), params.get("parse_mode"))
        if error:
            return error
        msg = self.find(int(params["chat_id"]), int(params["message_id"]))
        if msg is None or msg.deleted:
            return self._fail(400, "Bad Request: message to edit not found")
        if msg.text == params["text"] and (params.get("entities") or []) == msg.entities and \
                params.get("reply_markup") == msg.reply_markup:
            return self._fail(400, "Bad Request: message is not modified")
        msg.text, msg.entities, msg.edits = params["text"], params.get("entities") or [], msg.edits + 1
        if "reply_markup" in params:
            msg.reply_markup = params["reply_markup"]
        return self._message_json(msg)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        msg = self.find(int(params["chat_id"]), int(params["message_id"]))
        if msg is None or msg.deleted:
            return self._fail(400, "Bad Request: message to edit not found")
        if params.get("reply_markup") == msg.reply_markup:
            return self._fail(400, "Bad Request: message is not modified")
        msg.reply_markup, msg.edits = params.get("reply_markup"), msg.edits + 1
        return self._message_json(msg)

    async def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        msg = self.find(int(params["chat_id"]), int(params["message_id"]))
        if msg is not None:
            msg.deleted = True
        return True

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> Any:
        if not self.drafts_supported or int(params["chat_id"]) < 0:
            return self._fail(400, "Bad Request: method is available only for private chats with topics")
        if utf16_len(str(params.get("text", ""))) > 4096:
            return self._fail(400, "Bad Request: text is too long")
        self.drafts.append(params)
        return True

    async def _m_getChatMember(self, params: dict[str, Any]) -> Any:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        user = self._user(user_id, "en")
        if user_id in self.chat_admins.get(chat_id, set()):
            rights = ("can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
                      "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
                      "can_edit_stories", "can_delete_stories", "can_send_welcome_messages")
            return {"status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                    **dict.fromkeys(rights, True)}
        return {"status": "member", "user": user}

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = params["file_id"]
        if file_id not in self.files:
            return self._fail(400, "Bad Request: invalid file_id")
        size = len(self.files[file_id])
        if size > 20 * 1024 * 1024:
            return self._fail(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": size,
                "file_path": f"documents/{file_id}"}

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        file_id = request.match_info["path"].split("/")[-1]
        if file_id not in self.files:
            return web.Response(status=404)
        await self._wait_hold("file", {"file_id": file_id})
        self.file_downloads += 1
        return web.Response(body=self.files[file_id])

    async def _send_file(self, params: dict[str, Any], kind: str) -> Any:
        upload = params.get(kind)
        if isinstance(upload, str) and upload.startswith("attach://"):  # how aiogram names a multipart part
            upload = params.get(upload.removeprefix("attach://"))
        if upload is None or isinstance(upload, str):
            return self._fail(400, f"Bad Request: there is no {kind} in the request")
        chat_id = int(params["chat_id"])
        sent = SentFile(chat_id, next(self._message_ids), kind, upload.filename, upload.file.read(),
                        params.get("caption"))
        self.sent_files.append(sent)
        body: dict[str, Any] = {"file_id": f"sent{sent.message_id}", "file_unique_id": f"us{sent.message_id}"}
        media = [{**body, "width": 1, "height": 1}] if kind == "photo" else {**body, "file_name": sent.name}
        return {"message_id": sent.message_id, "date": int(time.time()), kind: media,
                "chat": self._chat(chat_id, "private" if chat_id > 0 else "group"), "from": self._bot_user()}

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "photo")

    async def _m_sendDocument(self, params: dict[str, Any]) -> Any:
        return await self._send_file(params, "document")

    def files_sent(self, chat_id: int) -> list[SentFile]:
        return [f for f in self.sent_files if f.chat_id == chat_id]

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True


def _chat_of(update: dict[str, Any]) -> Any:
    for kind in ("message", "edited_message", "callback_query"):
        item = update.get(kind)
        if isinstance(item, dict):
            chat = (item.get("message") or {}).get("chat") if kind == "callback_query" else item.get("chat")
            if isinstance(chat, dict):
                return chat["id"]
    return None


class _StrictHTML(html.parser.HTMLParser):
    """Enough of Telegram's HTML rules to catch unbalanced or unknown tags and stray '<'/'&'."""

    ALLOWED = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote",
               "tg-spoiler", "span", "tg-emoji"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            raise ValueError(f"unsupported start tag \"{tag}\"")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            raise ValueError(f"unexpected end tag \"{tag}\"")

    def close(self) -> None:
        super().close()
        if self.stack:
            raise ValueError("unclosed tags")
