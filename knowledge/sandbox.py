"""Run the loaders in a child process with a wall-clock timeout and a memory limit."""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from knowledge.errors import (
    WORKER_ERRORS,
    CorruptFileError,
    IngestCancelledError,
    ParseLimitError,
    ParseTimeoutError,
    too_much_text,
)
from knowledge.loaders import Extracted

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


# The only variables the child gets: it runs untrusted input, so no token, API key, database URL or proxy
# reaches it. PATH and the locale keep the interpreter's behaviour; PYTHONPATH lets it import what we import.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")
_STDERR_TAIL = 64 * 1024  # what is kept of the child's stderr for the log


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Limits for one parse: wall-clock seconds, address space of the child in MiB, characters of text."""

    timeout_s: float = 30.0
    memory_mb: int = 1024
    max_chars: int = 20_000 * 800  # KB_MAX_CHUNKS chunks of the default size; the KB passes its own


def child_environment() -> dict[str, str]:
    """The parse worker's environment: a few harmless variables of ours, nothing else."""
    env = {name: os.environ[name] for name in _CHILD_ENV if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    env["OMP_NUM_THREADS"] = "1"
    return env


def parse_in_subprocess(
    data: bytes, limits: ParseLimits | None = None, cancel: threading.Event | None = None
) -> Extracted:
    """Extract text from untrusted bytes in `python -m knowledge._parse_worker`; blocking.

    Setting `cancel` kills the child and raises IngestCancelledError."""
    limits = limits or ParseLimits()
    cmd = [
        sys.executable,
        "-m",
        "knowledge._parse_worker",
        str(limits.memory_mb),
        str(int(limits.timeout_s) + 1),  # CPU seconds: a backstop behind the wall-clock timeout
        str(limits.max_chars),
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=_PACKAGE_ROOT,  # `-m` resolves our package, never one in the caller's directory
        env=child_environment(),
        start_new_session=True,  # a terminal's Ctrl-C goes to us, and we kill the child
    )
    # JSON of at most max_chars characters: 6 bytes each at worst (\u001f), plus the section structure.
    out, err = collect(
        proc, data, limits.timeout_s, 8 * limits.max_chars + 2**20, too_much_text(limits.max_chars), cancel
    )
    try:
        reply = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict):
        # Killed by the CPU limit, out of memory before it could report, or crashed in C code.
        log.warning("parse worker exited with %s: %s", proc.returncode, err.decode("utf-8", "replace")[-500:])
        raise ParseLimitError()
    if reply.get("ok"):
        return Extracted.from_json(reply["result"])
    error_cls = WORKER_ERRORS.get(str(reply.get("error")), CorruptFileError)
    raise error_cls(str(reply.get("message") or error_cls.default_message))


def collect(
    proc: subprocess.Popen[bytes],
    data: bytes,
    timeout_s: float,
    max_out: int,
    too_much: Exception,
    cancel: threading.Event | None = None,
) -> tuple[bytes, bytes]:
    """Feed `data` to the child, read its stdout (at most `max_out` bytes, else `too_much` is raised) and the
    tail of its stderr until it exits; the child is killed on any failure (ParseTimeoutError past `timeout_s`,
    IngestCancelledError once `cancel` is set)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    out, err = bytearray(), bytearray()
    sent = 0
    view = memoryview(data)
    try:
        with selectors.DefaultSelector() as selector:
            if data:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(proc.stderr, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ParseTimeoutError()
                if cancel is not None and cancel.is_set():
                    raise IngestCancelledError()
                for key, _ in selector.select(remaining if cancel is None else min(remaining, 0.1)):
                    stream = key.fileobj
                    if stream is proc.stdin:
                        try:
                            sent += os.write(key.fd, view[sent : sent + 2**16])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # the child stopped reading (a limit): its reply says why
                            sent = len(data)
                        if sent >= len(data):
                            selector.unregister(stream)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, 2**16)
                    if not chunk:
                        selector.unregister(stream)
                        continue
                    if stream is proc.stdout:
                        out += chunk
                        if len(out) > max_out:  # checked as it arrives: never more than this in memory
                            raise too_much
                    else:
                        err += chunk
                        del err[:-_STDERR_TAIL]
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise ParseTimeoutError() from None
    except BaseException:
        _kill(proc)
        raise
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    return bytes(out), bytes(err)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
