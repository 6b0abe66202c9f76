"""Storage: SQLAlchemy 2 async models, the database, and small query functions."""

from bot.storage.db import Database

__all__ = ["Database"]
