"""The Telegram bot and its services.

Importing the package first makes aiogram build its Telegram types on first use rather than all at import (2 s and
90 MB less at start-up): see bot/lazy_types.py.
"""

from bot import lazy_types as _lazy_types

_lazy_types.install()
