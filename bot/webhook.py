"""Webhook mode: an aiohttp server that records Telegram's POSTs in the inbox and answers 200 at once.

The inbox pump does the work, exactly as in polling mode, so any number of bot processes can stand behind one
webhook URL (a load balancer in front) on one PostgreSQL database: whichever process receives an update records it,
and the per-chat claims decide who answers it. Telegram proves itself with the secret token it got from setWebhook
(header X-Telegram-Bot-Api-Secret-Token); a request without it is refused and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from bot.config import ConfigError, Settings
from bot.pump import UpdatePump

if TYPE_CHECKING:
    from bot.app import BotApp

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as secret_token


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    path: str
    secret: str


def webhook_config(settings: Settings) -> WebhookConfig:
    """The webhook settings, checked; raises ConfigError naming the variable."""
    url = (settings.webhook_url or "").strip()
    if not url:
        raise ConfigError("missing setting WEBHOOK_URL: the public https:// address Telegram posts updates to")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("invalid setting WEBHOOK_URL: expected https://host[:port]/path")
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        raise ConfigError("missing setting WEBHOOK_SECRET: 1-256 characters of A-Z a-z 0-9 _ - "
                          "(for example the output of `openssl rand -hex 32`)")
    if not _SECRET_RE.fullmatch(secret):
        raise ConfigError("invalid setting WEBHOOK_SECRET: only 1-256 characters of A-Z a-z 0-9 _ - are allowed")
    if parts.scheme != "https":
        log.warning("WEBHOOK_URL is not https: Telegram only delivers to https addresses")
    return WebhookConfig(url=url, path=parts.path or "/", secret=secret)


class WebhookServer:
    """Receives updates on `path`: verify the secret, record in the inbox, answer 200; GET /healthz for probes."""

    def __init__(self, pump: UpdatePump, secret: str, path: str = "/") -> None:
        self.pump, self.path = pump, path
        self._secret = secret.encode()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        if self.path != HEALTH_PATH:
            app.router.add_get(HEALTH_PATH, self._health)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the port."""
        self._runner = web.AppRunner(self.application(), handle_signals=False, access_log=None,
                                     shutdown_timeout=10.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        """Stop accepting; requests being recorded finish first."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook request from %s without the right secret token: refused", request.remote)
            return web.Response(status=401, text="unauthorized")
        try:
            update = await request.json(loads=json.loads)
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="expected a JSON update")
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int) \
                or isinstance(update.get("update_id"), bool):
            return web.Response(status=400, text="expected a JSON update")
        try:
            await self.pump.submit([update])
        except Exception:  # not recorded: a non-2xx makes Telegram deliver it again later
            log.exception("could not record update %s", update["update_id"])
            return web.Response(status=500, text="not recorded")
        return web.Response(status=200)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "in_flight": self.pump.busy, "closing": self.pump.closing})


async def start_webhook(app: BotApp) -> WebhookServer:
    """Start the pump and the server, then tell Telegram where to post (with the secret token)."""
    config = webhook_config(app.settings)
    server = WebhookServer(app.pump, config.secret, config.path)
    await app.start(polling=False)
    try:
        await server.start(app.settings.webhook_host, app.settings.webhook_port)
        await app.bot.set_webhook(config.url, secret_token=config.secret,
                                  allowed_updates=app.dp.resolve_used_update_types(), drop_pending_updates=False)
    except BaseException:
        await server.stop()
        raise
    log.info("webhook: listening on %s:%s%s", app.settings.webhook_host, server.port, config.path)
    return server


async def stop_webhook(app: BotApp, server: WebhookServer | None) -> None:
    """Stop accepting updates, then drain like polling does (answers in flight get SHUTDOWN_TIMEOUT).

    The webhook stays registered with Telegram: other processes behind the URL keep serving, and while none is up
    Telegram keeps the updates and delivers them later.
    """
    if server is not None:
        await server.stop()
    await app.stop()


async def run_webhook(app: BotApp) -> None:
    """`adaptbot run --webhook`: serve until SIGTERM/SIGINT, then drain."""
    try:
        webhook_config(app.settings)
    except ConfigError:
        await app.stop()  # close what create() opened: the database, the HTTP session
        raise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, app.stop_event.set)
    server: WebhookServer | None = None
    try:
        server = await start_webhook(app)
        await app.stop_event.wait()
        log.info("stopping: draining answers in flight")
    finally:
        await stop_webhook(app, server)
