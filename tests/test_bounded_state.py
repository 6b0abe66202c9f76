"""Nothing grows with the number of users: per-process maps are bounded LRU caches (with a TTL where it fits)."""

from __future__ import annotations

from aiogram.types import Update

from agents.lru import LRUCache
from bot import streaming
from bot.service import MAX_RATE_LIMITED_USERS
from tests.conftest import BotRunner
from tests.fakes.openai_server import ScriptedOpenAI
from tests.fakes.telegram_server import FakeTelegram

USERS = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_cache_drops_the_least_recently_used_and_the_expired() -> None:
    clock = Clock()
    evicted: list[tuple[str, int]] = []
    cache: LRUCache[str, int] = LRUCache(2, ttl=10, clock=clock, on_evict=lambda k, v: evicted.append((k, v)))
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # reading makes "a" the most recently used...
    cache["c"] = 3  # ...so "b" goes
    assert evicted == [("b", 2)] and list(cache) == ["a", "c"]
    clock.now = 5
    cache.touch("c", 0)  # touch keeps the value and its age
    assert cache.get("c") == 3
    clock.now = 10
    assert "a" not in cache and cache.get("c") is None and len(cache) == 0  # expired: gone, not "evicted"
    assert evicted == [("b", 2)]
    cache["d"] = 4
    assert cache.pop("d") == 4 and cache.pop("d", -1) == -1


async def test_maps_keyed_by_users_stay_bounded_after_10000_users(bot: BotRunner, telegram: FakeTelegram,
                                                                 llm: ScriptedOpenAI) -> None:
    await bot.start(default_mode="zero-shot", rate_limit_per_minute=2)
    limiter = bot.app.services.chat.rate_limiter
    for user_id in range(1000, 1000 + USERS):
        limiter.check(user_id)
    assert len(limiter) <= MAX_RATE_LIMITED_USERS < USERS
    for text in ("one", "two", "three"):  # the limit still holds for whoever is active now
        telegram.user_says(1, text)
    await telegram.wait_for(lambda: len(telegram.texts(1)) == 3)
    assert telegram.texts(1)[2].startswith("Too many messages")

    # the two maps filled by rare events (a chat refusing drafts, an update another process ran), as their code does
    update = Update.model_validate({"update_id": 1})
    for key in range(USERS):
        streaming._drafts_refused[key] = True
        bot.app.pump._parsed[key] = update
    assert len(streaming._drafts_refused) <= streaming._drafts_refused.max_size < USERS
    assert len(bot.app.pump._parsed) <= bot.app.pump._parsed.max_size < USERS


async def test_the_dispatcher_keeps_nothing_per_chat(bot: BotRunner, telegram: FakeTelegram,
                                                     llm: ScriptedOpenAI) -> None:
    """aiogram's default FSM storage created a record for every chat and user it saw, kept for good; the bot keeps
    its per-chat state in the database and uses no FSM, so the dispatcher runs without one."""
    await bot.start(default_mode="zero-shot")
    chats = range(2000, 2040)
    for chat in chats:
        telegram.user_says(chat, "hello")
    await telegram.wait_for(lambda: all(telegram.texts(chat) for chat in chats))
    assert len(bot.app.dp.fsm.storage.storage) == 0  # type: ignore[attr-defined]
