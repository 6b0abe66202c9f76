"""Logging set-up that never lets a secret through: every record is scrubbed of the configured secrets."""

from __future__ import annotations

import logging
import re

from bot.config import Settings


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._pattern = re.compile("|".join(re.escape(s) for s in secrets if len(s) >= 6)) if any(
            len(s) >= 6 for s in secrets) else None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        message = record.getMessage()
        if self._pattern.search(message):
            record.msg, record.args = self._pattern.sub("***", message), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self._pattern.search(text):
                record.msg = f"{record.msg}\n{self._pattern.sub('***', text)}"
                record.exc_info, record.exc_text = None, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.telegram_bot_token, settings.openai_api_key, settings.search_api_key, settings.webhook_secret]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]


def setup_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.setLevel(settings.log_level.upper())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install_redaction(settings, handler)
    root.handlers[:] = [handler]
    # the OpenAI SDK's HTTP client is httpx2 (a line per request at INFO); aiogram logs every update handled
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "aiogram.event"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def install_redaction(settings: Settings, handler: logging.Handler) -> None:
    handler.addFilter(RedactSecrets(secrets_of(settings)))
