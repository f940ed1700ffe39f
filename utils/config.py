"""Experiment configs: JSON5 loading, ``base_config`` inheritance, schema validation, overrides.

A config file may name ``base_config``: a path (relative to that file) or a list of paths. Bases are
loaded first (recursively, in list order) and the file is deep-merged over them: dicts merge key by
key, any other value (lists included) replaces. The merged dict is then validated against
:class:`utils.schema.CantorConfig`; command-line overrides (``--set train.batch_size=8``) are merged
last and go through the same validation.

Errors (:class:`ConfigError`) name the file that set the offending key, the key path and, for an
unknown key, the nearest known one.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

import json5

from utils.schema import CantorConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDER = re.compile(r"^\s*\[.*\]\s*$")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says where and why."""


def resolve_path(path: str | Path) -> Path:
    """Absolute path of a config path value: relative paths are taken from the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def _read_json5(path: Path) -> dict:
    try:
        data = json5.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON5: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return data


def _merge(base: dict, over: dict, origin: dict, source: str | None, prefix: tuple = ()) -> None:
    """Deep-merge ``over`` into ``base`` in place, recording in ``origin`` which source set each key
    (``source`` None: keep the origins already recorded, as for a base file's merged tree)."""
    for key, value in over.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origin, source, path)
        else:
            base[key] = value
            if source is None:
                continue
            origin[path] = source
            if isinstance(value, dict):
                _record(value, origin, source, path)


def _record(d: dict, origin: dict, source: str, prefix: tuple) -> None:
    for key, value in d.items():
        origin[prefix + (key,)] = source
        if isinstance(value, dict):
            _record(value, origin, source, prefix + (key,))


def _load_tree(path: Path, origin: dict, seen: tuple = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: base_config cycle: {' -> '.join(map(str, seen + (path,)))}")
    data = _read_json5(path)
    bases = data.pop("base_config", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: base_config must be a path or a list of paths")
    merged: dict = {}
    for base in bases:
        _merge(merged, _load_tree(path.parent / base, origin, seen + (path,)), origin, None)
    _merge(merged, data, origin, str(path))
    return merged


def parse_override(text: str) -> dict:
    """``"train.batch_size=8"`` -> ``{"train": {"batch_size": 8}}``; the value is read as JSON5,
    falling back to a plain string (so ``--set vocoder.type=hifigan`` needs no quotes)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    try:
        value = json5.loads(raw)
    except ValueError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, path: tuple, origin: dict, choices=None):
    """Check ``value`` against the annotation ``tp`` and return it converted (dataclass, float)."""
    where = ".".join(path)
    src = origin.get(path, "defaults")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: {where} must be an object, got {value!r}")
        return _build(tp, value, path, origin)
    base = typing.get_origin(tp)
    if base is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{src}: {where} must be a list of {_type_name(item)}, got {value!r}")
        return [_convert(v, item, path + (str(i),), origin) for i, v in enumerate(value)]
    if base is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: {where} must be an object, got {value!r}")
        return {k: _convert(v, item, path + (k,), origin) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{src}: {where} must be {_type_name(tp)}, got {value!r}")
    if isinstance(value, str) and _PLACEHOLDER.match(value):
        raise ConfigError(f"{src}: {where} is still the placeholder {value!r}: set it to a real value")
    if choices is not None and value not in choices:
        raise ConfigError(f"{src}: {where} = {value!r} is not one of {', '.join(choices)}")
    return value


def _build(cls, data: dict, path: tuple, origin: dict):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            where = ".".join(path + (key,))
            near = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{'.'.join(path + (near[0],))}'?" if near else \
                f"; known keys here: {', '.join(fields)}"
            raise ConfigError(f"{origin.get(path + (key,), 'config')}: unknown key '{where}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], path + (name,), origin,
                                    f.metadata.get("choices"))
    return cls(**kwargs)


def check_vocoder(cfg: CantorConfig, source: str = "config") -> None:
    """The vocoder must expect the mel that stage 1 computes: its sample rate, n_mel, hop, n_fft,
    window, fmin and fmax (from its config.json / args.json when installed, else the release
    defaults: universal HiFi-GAN 22 050 Hz / 80 / hop 256 / fmax 8000, BigVGAN 24 000 Hz / 100 /
    hop 256 / fmax 12000) must equal cfg.preprocess's. Griffin-Lim accepts any mel.

    Raises: ConfigError naming each differing key, or an unreadable vocoder json.
    """
    from models.vocoders.formats import expected_mel_settings  # light; imported late (no cycle)
    try:
        expected = expected_mel_settings(cfg.vocoder)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{source}: vocoder.path: {e}") from None
    if expected is None:
        return
    settings, origin = expected
    wrong = [f"preprocess.{name} = {getattr(cfg.preprocess, name)} but the vocoder expects {value}"
             for name, value in dataclasses.asdict(settings).items()
             if getattr(cfg.preprocess, name) != value]
    if wrong:
        raise ConfigError(f"{source}: vocoder '{cfg.vocoder.type}' ({origin}) does not match the "
                          f"preprocessing: {'; '.join(wrong)}. Change the preprocess settings, or "
                          f"vocoder.type / vocoder.path (griffin_lim accepts any mel).")


def config_from_dict(data: dict, source: str = "config") -> CantorConfig:
    """Validate a plain (already merged) dict, e.g. an experiment's ``args.json`` (same errors as
    :func:`load_config`)."""
    origin: dict = {}
    _record(data, origin, source, ())
    cfg = _build(CantorConfig, data, (), origin)
    check_vocoder(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> CantorConfig:
    """Load ``path`` with its ``base_config`` chain and ``--set`` overrides, validated.

    Raises:
        ConfigError: missing/unparsable file, unknown key (with the nearest known key), wrong
            type, a value outside its choices, a placeholder such as ``"[Opencpop path]"``, or a
            vocoder that disagrees with the preprocessing (:func:`check_vocoder`).
    """
    origin: dict = {}
    merged = _load_tree(Path(path), origin)
    for text in overrides:
        _merge(merged, parse_override(text), origin, f"--set {text}")
    cfg = _build(CantorConfig, merged, (), origin)
    check_vocoder(cfg, str(path))
    return cfg


def config_to_dict(cfg: CantorConfig) -> dict:
    """Plain dict of a config, as written to an experiment's ``args.json``."""
    return dataclasses.asdict(cfg)
