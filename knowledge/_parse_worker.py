"""Parse worker: `python -m knowledge._parse_worker MEMORY_MB CPU_S MAX_CHARS` reads a file on stdin, writes JSON
on stdout.

Runs untrusted input, so it limits itself first (address space, CPU time, no file writes) and reports every
failure as JSON naming a `KnowledgeError` class; the parent treats anything else (a crash, a kill) as a failure.
A text longer than MAX_CHARS is refused here, so the parent never receives more than that.
"""

from __future__ import annotations

import json
import resource
import sys


def _limit(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else hard))


def main(argv: list[str]) -> int:
    memory_mb, cpu_s, max_chars = int(argv[0]), int(argv[1]), int(argv[2])
    _limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    _limit(resource.RLIMIT_CPU, cpu_s)
    _limit(resource.RLIMIT_FSIZE, 0)  # a parser has no business writing files
    _limit(resource.RLIMIT_CORE, 0)
    data = sys.stdin.buffer.read()

    from knowledge.errors import CorruptFileError, KnowledgeError, ParseLimitError, too_much_text
    from knowledge.loaders import extract

    try:
        extracted = extract(data)
        del data
        if extracted.chars > max_chars:
            raise too_much_text(max_chars)
        out = {"ok": True, "result": extracted.to_json()}
    except KnowledgeError as exc:
        out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except MemoryError:
        out = {"ok": False, "error": ParseLimitError.__name__, "message": ParseLimitError.default_message}
    except RecursionError:
        out = {
            "ok": False,
            "error": CorruptFileError.__name__,
            "message": "The file is nested too deeply to read.",
        }
    except Exception as exc:  # noqa: BLE001 - any other parser failure means the file is unusable
        message = f"{CorruptFileError.default_message} ({type(exc).__name__})"
        out = {"ok": False, "error": CorruptFileError.__name__, "message": message}
    sys.stdout.write(json.dumps(out, ensure_ascii=False))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
