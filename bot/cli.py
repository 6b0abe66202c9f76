"""The `adaptbot` command: run (Telegram), chat (terminal), kb (knowledge base), eval, finetune, dataset."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.config import ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptbot", description="LLM adaptation levels in one Telegram bot.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the Telegram bot (long polling, or --webhook)")
    run.add_argument("--webhook", action="store_true", help="serve Telegram webhooks instead of polling")
    chat = sub.add_parser("chat", help="chat in the terminal through the same chat service")
    chat.add_argument("--chat-id", type=int, default=0, help="whose memory to use (default 0: the terminal's)")
    chat.add_argument("--lang", choices=["en", "ru"], default=None)
    chat.add_argument("--once", metavar="TEXT", default=None,
                      help="answer this one message (a question or a /command), wait for its jobs, and exit")
    chat.add_argument("--user", action="store_true",
                      help="act as an ordinary user, not a bot admin (the terminal's default is admin)")
    sub.add_parser("kb", help="manage the knowledge base (kb add|list|delete|search)", add_help=False)
    sub.add_parser("finetune", help="LoRA fine-tuning to a verified GGUF", add_help=False)
    sub.add_parser("eval", help="measure levels and models on your own cases", add_help=False)
    sub.add_parser("dataset", help="export SFT/DPO/KTO data from votes and feedback (dataset export)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # kb and finetune have their own parsers: hand them the rest of the line untouched
    if argv and argv[0] == "finetune":
        from finetune.cli import main as finetune_main

        return finetune_main(argv[1:])
    if argv and argv[0] == "eval":
        from evals.cli import main as eval_main

        return _guard(lambda settings: eval_main(argv[1:], settings))
    if argv and argv[0] == "dataset":
        from bot.dataset import cli as dataset_main

        return _guard(lambda settings: dataset_main(argv[1:], settings))
    if argv and argv[0] == "kb":
        return _guard(lambda settings: _kb(settings, argv[1:]))
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _guard(lambda settings: asyncio.run(_run(settings, args.webhook)))
    lang = args.lang or ("ru" if os.environ.get("LANG", "").startswith("ru") else "en")
    return _guard(lambda settings: asyncio.run(_chat(settings, args.chat_id, lang, args.once, not args.user)))


def _guard(action: object) -> int:
    """Load settings and run; a configuration problem is one line on stderr and exit code 2."""
    try:
        settings = load_settings()
        return int(action(settings) or 0)  # type: ignore[operator]
    except ConfigError as exc:
        print(f"adaptbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _kb(settings: Settings, argv: list[str]) -> int:
    from knowledge.cli import main as kb_main

    return kb_main(argv, data_dir=settings.data_dir, embedding_model=settings.embedding_model,
                   chroma_host=settings.chroma_host, chroma_port=settings.chroma_port,
                   embedding_backend=settings.embedding_backend)


async def _run(settings: Settings, webhook: bool) -> int:
    from bot.app import BotApp
    from bot.logs import setup_logging

    setup_logging(settings)
    app = await BotApp.create(settings, own_process=True)
    if webhook:
        from bot.webhook import run_webhook

        await run_webhook(app)
    else:
        await app.run_polling()
    return 0


async def _chat(settings: Settings, chat_id: int, lang: str, once: str | None, admin: bool) -> int:
    import logging

    from bot.app import create_services
    from bot.logs import setup_logging
    from bot.terminal import run_terminal

    setup_logging(settings)
    logging.getLogger().setLevel(logging.WARNING)  # keep the conversation readable
    services = await create_services(settings)
    try:
        return await run_terminal(services, chat_id, lang, admin=admin, once=once)
    finally:
        await services.aclose()


if __name__ == "__main__":
    raise SystemExit(main())
