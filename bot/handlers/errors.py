"""The one place where failures become words for the user."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import ErrorEvent

from agents.errors import (
    KnowledgeUnavailableError,
    ModelCallError,
    ModelTimeoutError,
    ModelUnavailableError,
    UnknownNameError,
)
from agents.runtime import TurnCancelled
from bot.i18n import lang_of, t
from bot.service import ServiceError
from bot.telegram_session import UNDELIVERED, SendUncertain

log = logging.getLogger(__name__)


def user_message(exc: BaseException, lang: str) -> str | None:
    """The text to show for an expected failure; None for a bug (which is logged and answered generically)."""
    if isinstance(exc, TurnCancelled):
        return t("stopped", lang)
    if isinstance(exc, KnowledgeUnavailableError):
        return t("err_kb_unavailable", lang)
    if isinstance(exc, ModelTimeoutError):
        return t("err_timeout", lang)
    if isinstance(exc, ModelCallError):
        return t("err_model", lang, reason=exc.reason)
    if isinstance(exc, ModelUnavailableError):
        return t("err_unavailable", lang, reason=str(exc))
    if isinstance(exc, ServiceError):
        return t(f"err_{exc.code}", lang, **exc.params)
    if isinstance(exc, UnknownNameError):
        return str(exc)
    kb_message = _knowledge_message(exc)
    if kb_message is not None:
        return kb_message
    return None


def _knowledge_message(exc: BaseException) -> str | None:
    try:
        from knowledge.errors import KnowledgeError  # optional package part
    except ImportError:
        return None
    return f"⚠️ {exc}" if isinstance(exc, KnowledgeError) else None


async def on_error(event: ErrorEvent) -> None:
    """A bug reached the top of a handler: log it with the traceback, tell the user briefly.

    Telegram out of reach for longer than the send retry window is no bug: the error is raised on (telling the user
    would fail as well), so that the inbox gives the update back and it runs again later instead of being marked done.
    """
    if isinstance(event.exception, UNDELIVERED):
        raise event.exception
    if isinstance(event.exception, SendUncertain):
        return  # logged where it happened; Telegram may have the reply, and another one could double it
    log.error("unhandled error in update %s", event.update.update_id, exc_info=event.exception)
    message = event.update.message or (event.update.callback_query and event.update.callback_query.message)
    user = event.update.message.from_user if event.update.message else (
        event.update.callback_query.from_user if event.update.callback_query else None)
    lang = lang_of(user.language_code if user else None)
    if message is not None and hasattr(message, "answer"):
        try:
            await message.answer(user_message(event.exception, lang) or t("err_internal", lang))
        except Exception:  # noqa: BLE001 - nothing more we can do; already logged
            log.warning("could not report the error to chat %s", message.chat.id)


def create_router() -> Router:
    router = Router(name=__name__)
    router.errors.register(on_error)
    return router
