"""aiogram's Telegram types and methods, built on first use instead of at import.

`import aiogram` builds the pydantic validator of every one of its ~450 Telegram types (aiogram/types/__init__.py
ends with a loop calling `model_rebuild` on each; upstream: aiogram issues 1876 and 1891) and of its ~170 methods.
The types refer to each other in cycles (Message and Chat, the rich text blocks), and pydantic builds a separate copy
of a whole cycle for every member of it: that loop was 2.2 of the 3.1 s of `import aiogram` here and about 90 of
its 166 MB, almost all of it for types a bot never receives or sends.

`install()` runs when the `bot` package is imported, before anything imports aiogram. The import of `aiogram.types`
then skips that loop and gives each types module the names the loop would have resolved its annotations with (the
modules import them only for type checkers); the methods get the `defer_build=True` aiogram already gives its types.
pydantic builds a type or method when it is first validated or serialised, from the same names: a bot uses a few
dozen, and `warm_up()` builds the usual ones once polling runs. Measured: `import aiogram` plus the first update,
message and methods 1.0 s and 74 MB, against 3.1 s and 166 MB.

What is patched: `BaseModel.model_rebuild` only while `aiogram.types` executes, and only for aiogram's own calls with
an explicit namespace (every other call goes through unchanged); `TelegramMethod.model_config`. Nothing changes if
aiogram was imported first (everything is built already). `tests/test_startup.py` checks that every aiogram type and
method still builds, to the same schemas and parsed values as a plain `import aiogram`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_TYPES = "aiogram.types"
_METHODS = "aiogram.methods"
_METHODS_BASE = "aiogram.methods.base"


def install() -> None:
    """Defer the build of aiogram's types and methods, if aiogram is not imported yet (idempotent)."""
    if _TYPES in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the aiogram modules whose execution is adjusted, through the usual path finder."""

    def __init__(self) -> None:
        self._pending = {_TYPES: _exec_types, _METHODS: _exec_methods, _METHODS_BASE: _exec_methods_base}

    def find_spec(self, fullname: str, path: Any,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        run = self._pending.pop(fullname, None)
        if run is None:
            return None
        if not self._pending:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, run)
        return spec


class _Loader(importlib.abc.Loader):
    """The module's own loader; `run(exec_module, module)` executes it."""

    def __init__(self, loader: Any, run: Callable[[Callable[[ModuleType], None], ModuleType], None]) -> None:
        self._loader, self._run = loader, run

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self._run(self._loader.exec_module, module)

    def __getattr__(self, name: str) -> Any:  # get_code, get_source, resource readers: the original loader's
        if name.startswith("__") or name == "_loader":  # not set yet (a copy): no lookup through ourselves
            raise AttributeError(name)
        return getattr(self._loader, name)


def _exec_types(exec_module: Callable[[ModuleType], None], module: ModuleType) -> None:
    with _rebuilds_deferred() as namespace:
        exec_module(module)
    if namespace:
        _share(namespace)
        _own_names(module)


def _exec_methods(exec_module: Callable[[ModuleType], None], module: ModuleType) -> None:
    exec_module(module)
    _own_names(module)


def _own_names(package: ModuleType) -> None:
    """pydantic builds a deferred class with the names of the code that first uses it ahead of its module's: each
    class of the package gets its module's names as its own, which come first (a caller's local `Chat` is ignored)."""
    for name in getattr(package, "__all__", ()):
        cls = getattr(package, name, None)
        if isinstance(cls, type) and hasattr(cls, "__pydantic_parent_namespace__"):
            cls.__pydantic_parent_namespace__ = vars(sys.modules[cls.__module__])


def _exec_methods_base(exec_module: Callable[[ModuleType], None], module: ModuleType) -> None:
    """The ~170 methods (SendMessage, ...) are built when first called, like the types, not when defined."""
    exec_module(module)
    config = getattr(getattr(module, "TelegramMethod", None), "model_config", None)
    if isinstance(config, dict):
        config["defer_build"] = True


@contextmanager
def _rebuilds_deferred() -> Iterator[dict[str, Any]]:
    from pydantic import BaseModel

    namespace: dict[str, Any] = {}
    original = BaseModel.__dict__["model_rebuild"]

    def model_rebuild(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        names = kwargs.get("_types_namespace")
        if names is not None and cls.__module__.startswith(f"{_TYPES}."):
            namespace.update(names)  # aiogram's loop: the same names each time
            return None
        kwargs["_parent_namespace_depth"] = kwargs.get("_parent_namespace_depth", 2) + 1  # this frame is extra
        return original.__func__(cls, **kwargs)  # type: ignore[no-any-return]

    BaseModel.model_rebuild = classmethod(model_rebuild)  # type: ignore[assignment,method-assign]
    try:
        yield namespace
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]


def _share(namespace: dict[str, Any]) -> None:
    """Each types module gets the names it lacks, so its annotations resolve wherever a build starts."""
    for name, module in list(sys.modules.items()):
        if name.startswith(f"{_TYPES}.") and module is not None:
            defined = vars(module)
            for key, value in namespace.items():
                defined.setdefault(key, value)


async def warm_up() -> None:
    """Build what every answer uses, one at a time between other work (about 0.2 s in all here): a message first,
    since the update and the replies that hold one then reuse it instead of building their own copy."""
    import asyncio

    from aiogram.methods import DeleteMessage, EditMessageText, SendChatAction, SendMessage, SendMessageDraft
    from aiogram.types import Message, Update

    from bot.telegram_session import response_type

    methods = (SendMessage, SendMessageDraft, EditMessageText, SendChatAction, DeleteMessage)
    for model in (Message, Update, *methods, *map(response_type, methods)):
        if not model.__pydantic_complete__:
            model.model_rebuild()
        await asyncio.sleep(0)
