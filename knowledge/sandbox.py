"""Run the loaders in a child process with a wall-clock timeout and a memory limit."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from knowledge.errors import WORKER_ERRORS, CorruptFileError, ParseLimitError, ParseTimeoutError
from knowledge.loaders import Extracted

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Limits for one parse: wall-clock seconds and address space of the child in MiB."""

    timeout_s: float = 30.0
    memory_mb: int = 1024


def parse_in_subprocess(data: bytes, limits: ParseLimits | None = None) -> Extracted:
    """Extract text from untrusted bytes in `python -m knowledge._parse_worker`; blocking."""
    limits = limits or ParseLimits()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "knowledge._parse_worker",
        str(limits.memory_mb),
        str(int(limits.timeout_s) + 1),  # CPU seconds: a backstop behind the wall-clock timeout
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=_PACKAGE_ROOT,  # `-m` resolves our package, never one in the caller's directory
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C goes to us, and we kill the child
    )
    try:
        out, err = proc.communicate(data, timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ParseTimeoutError() from None
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
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
