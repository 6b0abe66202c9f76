"""Factories: services, bot, dispatcher, and `BotApp`, which runs them (polling or webhook)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.utils.token import TokenValidationError, validate_token

from agents.backends import ModelRegistry
from agents.backends.cloud import CloudBackend
from agents.defaults import DEFAULT_LEVEL, DEFAULT_MODEL
from agents.errors import UnknownNameError
from agents.levels import default_levels
from agents.runtime import Brain
from bot import lazy_types
from bot.commands import build_registry
from bot.compare import CompareService
from bot.config import ConfigError, Settings
from bot.delivery import DeliveryJournal
from bot.eval_jobs import EvalJobs
from bot.handlers import build_router
from bot.handlers.commands import set_commands
from bot.inbox import Inbox, process_identity
from bot.middlewares import AccessMiddleware
from bot.permissions import GroupAdmins
from bot.pump import UpdatePump, poll
from bot.service import ChatGuards, ChatService
from bot.storage import Database
from bot.telegram_session import ResilientRequests

if TYPE_CHECKING:
    from bot.knowledge_link import LazyKnowledge

log = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0  # on top of SHUTDOWN_TIMEOUT: closing the database and the HTTP session


@dataclass
class Services:
    settings: Settings
    db: Database
    brain: Brain
    chat: ChatService
    knowledge: LazyKnowledge | None = None  # the knowledge base, opened on first use; None when not installed
    eval_jobs: EvalJobs = field(default_factory=EvalJobs)
    compare: CompareService = field(init=False)  # side by side (`/compare`), over `chat`

    def __post_init__(self) -> None:
        self.compare = CompareService(self.chat)

    async def aclose(self) -> None:
        await self.eval_jobs.aclose()
        if self.knowledge is not None:
            with contextlib.suppress(Exception):
                await self.knowledge.aclose()
        await self.brain.models.aclose()
        await self.db.dispose()


def build_models(settings: Settings) -> ModelRegistry:
    models = ModelRegistry()
    models.register(CloudBackend(model=settings.openai_model, api_key=settings.openai_api_key,
                                 base_url=settings.openai_base_url, timeout=settings.openai_timeout,
                                 max_retries=settings.openai_max_retries, temperature=settings.temperature))
    try:
        from agents.backends.local import LocalBackend, finetuned_provider
    except ImportError:  # pragma: no cover - llama-cpp-python missing
        log.warning("llama-cpp-python is not installed: local models are off")
        return models
    llama = local_options(settings)
    models.register(LocalBackend(model_path=settings.local_model_path, repo=settings.local_model_repo,
                                 filename=settings.local_model_file, **llama))
    models.add_provider(finetuned_provider(settings.data_dir, **llama))
    return models


def local_options(settings: Settings) -> dict[str, Any]:
    """How every local GGUF is run (LOCAL_* settings): the `LocalBackend` arguments besides its file and name."""
    from agents.backends.local import LoadedModels, LocalSampling

    return dict(cache_dir=settings.data_dir / "models", n_ctx=settings.local_n_ctx,
                n_threads=settings.local_n_threads, n_gpu_layers=settings.local_n_gpu_layers,
                extra_buffers=settings.local_extra_buffers, max_tokens=settings.local_max_tokens,
                prompt_cache_mb=settings.local_prompt_cache_mb, loaded=LoadedModels(settings.local_max_loaded_models),
                sampling=LocalSampling(settings.local_repeat_penalty, settings.local_frequency_penalty,
                                       settings.local_presence_penalty, settings.local_retry_repeat_penalty))


def build_brain(settings: Settings, models: ModelRegistry) -> Brain:
    """The brain the chats use, over `models`; raises ConfigError for a bad prompts file."""
    brain = Brain(default_levels(), models, prompts_path=settings.prompts_path,
                  token_budget=settings.history_token_budget, max_steps=settings.agent_max_steps,
                  rag_top_k=settings.rag_top_k,
                  turn_timeout=settings.openai_timeout * (settings.openai_max_retries + 1) + 5.0)
    try:
        brain.prompts()
    except Exception as exc:  # noqa: BLE001 - reported as a configuration error
        raise ConfigError(f"invalid setting PROMPTS_PATH: {exc}") from None
    return brain


def build_tools(settings: Settings, brain: Brain) -> None:
    try:
        from agents.tools.calculator import make_calculator_tool
    except ImportError:  # pragma: no cover
        return
    # each tool is built when a turn first asks for tools (after its model is ready, so LangChain is loaded)
    brain.tool_factories.append(functools.cache(make_calculator_tool))
    from agents.tools.web_search import make_search_provider, make_web_search_tool

    key = settings.search_api_key.get_secret_value() if settings.search_api_key else None
    try:
        provider = make_search_provider(settings.search_provider, settings.search_url, key,
                                        settings.search_timeout, settings.search_max_results,
                                        settings.search_max_chars)
    except Exception as exc:  # noqa: BLE001 - a half-configured provider
        raise ConfigError(f"invalid setting SEARCH_PROVIDER: {exc}") from None
    if provider is not None:
        brain.tool_factories.append(functools.cache(functools.partial(make_web_search_tool, provider)))


async def create_services(settings: Settings) -> Services:
    """Everything long-lived, created once and injected; raises ConfigError for a bad setting."""
    brain = build_brain(settings, build_models(settings))
    try:
        default_level, default_model = brain.parse_mode(settings.default_mode.split(), DEFAULT_LEVEL,
                                                        DEFAULT_MODEL)
    except UnknownNameError as exc:
        raise ConfigError(f"invalid setting DEFAULT_MODE: {exc}") from None
    default_model = _available_default(brain, default_level, default_model)
    build_tools(settings, brain)
    db = Database(settings.db_url)
    try:
        await db.create_all()
    except Exception as exc:  # noqa: BLE001 - reported as a configuration error
        await db.dispose()
        raise ConfigError(f"invalid setting DATABASE_URL: cannot open the database ({type(exc).__name__})") from None
    chat = ChatService(db, brain, default_level=default_level, default_model=default_model,
                       default_guards=ChatGuards.from_names(settings.guards),
                       max_input_chars=settings.max_input_chars,
                       rate_limit_per_minute=settings.rate_limit_per_minute,
                       daily_token_quota=settings.daily_token_quota,
                       max_concurrent_turns=settings.max_concurrent_turns,
                       # the client already retries failed requests; one more try covers a stream that broke
                       # before its first token (which the client does not retry). OPENAI_MAX_RETRIES=0: no retries.
                       model_retries=min(1, settings.openai_max_retries))
    services = Services(settings, db, brain, chat)
    _attach_knowledge(services)
    return services


def _available_default(brain: Brain, level: str, model: str) -> str:
    """The default model, or `local` when it cannot answer as configured (no OPENAI_API_KEY for `cloud`)."""
    reason = brain.models.get(model).unavailable_reason()
    if reason is None or model == "local" or "local" not in brain.models:
        return model
    log.warning("%s: the default mode is %s local instead of %s %s", reason, level, level, model)
    return "local"


def _attach_knowledge(services: Services) -> None:
    try:
        from bot.knowledge_link import attach
    except ImportError:  # pragma: no cover
        return
    attach(services)


def create_bot(settings: Settings) -> Bot:
    if settings.telegram_bot_token is None:
        raise ConfigError("missing setting TELEGRAM_BOT_TOKEN: get one from @BotFather")
    token = settings.telegram_bot_token.get_secret_value()
    try:
        validate_token(token)
    except TokenValidationError:
        raise ConfigError("invalid setting TELEGRAM_BOT_TOKEN: expected the form 123456:ABC...") from None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base),
                             timeout=settings.telegram_timeout)
    session.middleware(ResilientRequests(retry_seconds=settings.send_retry_seconds,
                                         chat_interval=settings.send_interval,
                                         group_interval=settings.group_send_interval))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=None, link_preview_is_disabled=True))


def create_dispatcher(services: Services) -> Dispatcher:
    dp = Dispatcher(disable_fsm=True)  # no FSM (per-chat state lives in the database): aiogram's default
    # in-memory FSM storage kept a record for every chat and user it ever saw
    dp["settings"] = services.settings
    dp["chat_service"] = services.chat
    dp["brain"] = services.brain
    dp["services"] = services
    registry = build_registry()
    dp["registry"] = registry
    dp["group_admins"] = GroupAdmins(services.settings.admin_ids)
    dp["deliveries"] = DeliveryJournal(services.db)
    access = AccessMiddleware(services.settings.admin_ids, services.settings.allowed_user_ids)
    dp.message.outer_middleware(access)
    dp.callback_query.outer_middleware(access)
    dp.message_reaction.outer_middleware(access)
    dp.include_router(build_router(registry))
    return dp


class BotApp:
    """The running bot: services, bot, dispatcher, inbox pump; polling or webhook in front."""

    def __init__(self, settings: Settings, services: Services, bot: Bot, *, own_process: bool = False) -> None:
        self.settings, self.services, self.bot = settings, services, bot
        self.own_process = own_process  # the process runs this bot alone (`adaptbot run`), not beside others or tests
        self.dp = create_dispatcher(services)
        self.owner = process_identity()  # lets a restarted process on this machine take back a dead one's work
        self.inbox = Inbox(services.db, self.owner)
        self.pump = UpdatePump(self.inbox, self.dp, bot)
        self.dp["pump"] = self.pump  # /stop withdraws questions still in the inbox
        self.stop_event = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._warm_up: asyncio.Task[None] | None = None

    @classmethod
    async def create(cls, settings: Settings, *, own_process: bool = False) -> BotApp:
        bot = create_bot(settings)
        try:
            services = await create_services(settings)
        except BaseException:
            await bot.session.close()
            raise
        return cls(settings, services, bot, own_process=own_process)

    async def start(self, *, polling: bool = True) -> None:
        me = await self.bot.me()
        log.info("bot @%s (id %s) starting", me.username, me.id)
        with contextlib.suppress(Exception):
            await set_commands(self.bot)
        self.pump.start()
        polled = asyncio.Event()
        if polling:
            await self.bot.delete_webhook(drop_pending_updates=False)
            # the update types the routers handle: Telegram sends message_reaction only when it is asked for
            self._poller = asyncio.create_task(
                poll(self.bot, self.pump, self.stop_event, allowed_updates=self.dp.resolve_used_update_types(),
                     answered=polled), name="polling")
        else:
            polled.set()
        # the default model and aiogram's types get ready once the first getUpdates is back: the bot already takes
        # updates then (a first question waits for the model there)
        self._warm_up = asyncio.create_task(self._warm(polled), name="warm-up")

    async def _warm(self, polled: asyncio.Event) -> None:
        try:
            await polled.wait()
            if self.stop_event.is_set():
                return  # stopped before the first poll came back: nothing to get ready for
            try:
                await lazy_types.warm_up()
            except Exception:  # a type not built now is built when first used; the model still gets ready
                log.warning("building aiogram's types ahead of use failed", exc_info=True)
            await self.services.brain.models.get(self.services.chat.default.model).warm_up()
        finally:
            if self.own_process:
                # What start-up built (about 260,000 objects: aiogram's types, pydantic's schemas, the SDKs) lives as
                # long as the process; frozen, the collector no longer walks it, and a full collection during a
                # burst of messages takes a few ms instead of 150-275 ms (gc.callbacks under bench/bench_bot.py's
                # load). Only a process of its own: cyclic garbage frozen with it is never freed.
                gc.freeze()

    async def stop(self) -> None:
        """Graceful stop: no new updates; answers in flight get SHUTDOWN_TIMEOUT seconds; then close.

        Bounded whatever the database does (down, locked, hung): after SHUTDOWN_TIMEOUT plus a few seconds to close,
        what is left is abandoned. Nothing is lost by that: unrecorded updates were not confirmed to Telegram, and
        the leases of unfinished ones run out (or the next run on this machine sees this process gone).
        """
        self.stop_event.set()
        if self._warm_up is not None:
            self._warm_up.cancel()
        closing = asyncio.create_task(self._close())
        limit = self.settings.shutdown_timeout + CLOSE_SECONDS if self.settings.shutdown_timeout else None
        done, _ = await asyncio.wait({closing}, timeout=limit)
        if not done:
            log.error("stopping: the database did not answer within %.0f s; the next run takes over what is left",
                      limit)
            closing.cancel()
            await asyncio.wait({closing}, timeout=1.0)
        await self.bot.session.close()

    async def _close(self) -> None:
        if self._poller is not None:
            await asyncio.wait({self._poller})  # it returns once stop_event is set, whatever Telegram does
        await self.pump.drain(self.settings.shutdown_timeout)
        await self.services.aclose()

    async def run_polling(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stop_event.set)
        await self.start(polling=True)
        await self.stop_event.wait()
        log.info("stopping: draining answers in flight")
        await self.stop()
