"""The run configuration: `default.toml` (the documented defaults), then a user file, then `--set` overrides."""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from finetune.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


@dataclass(frozen=True)
class DataConfig:
    val_fraction: float
    max_length: int


@dataclass(frozen=True)
class LoraConfig:
    rank: int
    alpha: float
    dropout: float
    target_modules: str | list[str]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    grad_accum: int
    lr: float
    lr_schedule: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    dtype: str
    device: str
    threads: int
    save_every: int
    keep_checkpoints: int
    gradient_checkpointing: bool


@dataclass(frozen=True)
class ExportConfig:
    pre_tokenizer: str
    quantize_from: str


@dataclass(frozen=True)
class VerifyConfig:
    samples: int
    max_rel_l2_f32: float
    max_rel_l2_f16: float
    max_rel_l2_bf16: float
    max_rel_l2_q8_0: float
    min_top1_k_quant: float


@dataclass(frozen=True)
class Config:
    seed: int
    data: DataConfig
    lora: LoraConfig
    train: TrainConfig
    export: ExportConfig
    verify: VerifyConfig

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Config:
        """Build from a complete nested dict (defaults already merged), checking types and values."""
        kwargs: dict[str, Any] = {"seed": _typed("seed", raw["seed"], "int")}
        for name, section_cls in _SECTIONS.items():
            kwargs[name] = section_cls(**{
                f.name: _typed(f"{name}.{f.name}", raw[name][f.name], f.type) for f in fields(section_cls)
            })
        config = cls(**kwargs)
        _check_values(config)
        return config


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "lora": LoraConfig, "train": TrainConfig, "export": ExportConfig, "verify": VerifyConfig,
}


def load_config(
    file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults (or `base`, a saved run's config), then `file`, then `overrides` ({"train.lr": 1e-4, ...})."""
    raw = _read_toml(DEFAULT_CONFIG)
    if base is not None:  # on top of the defaults: a run saved before a key was added still loads
        _merge_file(raw, copy.deepcopy(dict(base)), "the run's saved config")
    if file is not None:
        _merge_file(raw, _read_toml(Path(file)), str(file))
    for key, value in (overrides or {}).items():
        section, name = resolve_key(raw, key)
        if section is None:
            raw[name] = value
        else:
            raw[section][name] = value
    return Config.from_dict(raw)


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`["train.lr=1e-4", "lora.target_modules=[\"q_proj\"]"]` -> {"train.lr": 0.0001, ...}; values read as TOML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.lr=1e-4")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: `--set train.device=cpu`
        out[key.strip()] = value
    return out


def all_keys(raw: Mapping[str, Any] | None = None) -> list[str]:
    """Every valid dotted key, e.g. "train.lr"."""
    raw = raw if raw is not None else _read_toml(DEFAULT_CONFIG)
    keys = []
    for key, value in raw.items():
        if isinstance(value, dict):
            keys.extend(f"{key}.{name}" for name in value)
        else:
            keys.append(key)
    return keys


def resolve_key(raw: Mapping[str, Any], key: str) -> tuple[str | None, str]:
    """"train.lr" or a unique bare "lr" -> ("train", "lr"); top-level "seed" -> (None, "seed")."""
    valid = all_keys(raw)
    if key in valid:
        section, _, name = key.rpartition(".")
        return (section or None), name
    matches = [k for k in valid if k.rpartition(".")[2] == key]
    if len(matches) == 1:
        section, _, name = matches[0].rpartition(".")
        return (section or None), name
    if len(matches) > 1:
        raise ConfigError(f"config key {key!r} is ambiguous: say which, one of {', '.join(matches)}")
    raise ConfigError(_unknown(key, valid))


def _merge_file(raw: dict[str, Any], user: Mapping[str, Any], where: str) -> None:
    valid = all_keys(raw)
    for key, value in user.items():
        if isinstance(value, dict):
            if not isinstance(raw.get(key), dict):
                raise ConfigError(f"{where}: {_unknown(key, valid)}")
            for name, inner in value.items():
                if name not in raw[key]:
                    raise ConfigError(f"{where}: {_unknown(f'{key}.{name}', valid)}")
                raw[key][name] = inner
        elif key in raw and not isinstance(raw[key], dict):
            raw[key] = value
        else:
            raise ConfigError(f"{where}: {_unknown(key, valid)}")


def _unknown(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.8) or difflib.get_close_matches(
        key, [k.rpartition(".")[2] for k in valid], n=3
    )
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _typed(key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against the field's annotation (as a string under `from __future__ import annotations`)."""
    kind = str(annotation)
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "str | list[str]":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    else:  # pragma: no cover - a new field type needs a branch here
        raise TypeError(f"no check for {kind}")
    if not ok:
        raise ConfigError(f"config key {key!r} must be {kind.replace(' | ', ' or ')}, got {value!r}")
    return value


def _check_values(c: Config) -> None:
    problems = []
    if not 0 <= c.data.val_fraction < 1:
        problems.append("data.val_fraction must be in [0, 1)")
    if c.data.max_length < 8:
        problems.append("data.max_length must be at least 8")
    if c.lora.rank < 1:
        problems.append("lora.rank must be at least 1")
    if c.lora.alpha <= 0:
        problems.append("lora.alpha must be positive")
    if not 0 <= c.lora.dropout < 1:
        problems.append("lora.dropout must be in [0, 1)")
    if isinstance(c.lora.target_modules, list) and not c.lora.target_modules:
        problems.append("lora.target_modules must name at least one module")
    t = c.train
    for key in ("epochs", "batch_size", "grad_accum", "keep_checkpoints"):
        if getattr(t, key) < 1:
            problems.append(f"train.{key} must be at least 1")
    if t.lr <= 0:
        problems.append("train.lr must be positive")
    if t.lr_schedule not in ("cosine", "constant"):
        problems.append("train.lr_schedule must be 'cosine' or 'constant'")
    if not 0 <= t.warmup_ratio < 1:
        problems.append("train.warmup_ratio must be in [0, 1)")
    if t.weight_decay < 0 or t.max_grad_norm < 0 or t.save_every < 0 or t.threads < 0:
        problems.append("train.weight_decay, max_grad_norm, save_every and threads cannot be negative")
    if t.dtype not in ("float32", "bfloat16"):
        problems.append("train.dtype must be 'float32' or 'bfloat16'")
    if t.device not in ("auto", "cpu", "cuda", "mps") and not t.device.startswith("cuda:"):
        problems.append("train.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if c.export.quantize_from not in ("f32", "f16"):
        problems.append("export.quantize_from must be 'f32' or 'f16'")
    if not c.export.pre_tokenizer.strip():
        problems.append("export.pre_tokenizer cannot be empty ('auto' lets the converter decide)")
    if c.verify.samples < 1:
        problems.append("verify.samples must be at least 1")
    if problems:
        raise ConfigError("bad config: " + "; ".join(problems))
