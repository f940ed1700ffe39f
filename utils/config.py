"""Experiment configs: JSON5 loading, ``base_config`` inheritance, schema validation, overrides.

A config file may name ``base_config``: a path (relative to that file) or a list of paths. Bases are
loaded first (recursively, in list order) and the file is deep-merged over them: dicts merge key by
key, any other value (lists included) replaces. The merged dict is then validated against
:class:`utils.schema.CantorConfig`; command-line overrides (``--set train.batch_size=8``) are merged
last and go through the same validation.

Errors (:class:`ConfigError`) name the file that set the offending key, the key path and, for an
unknown key, the nearest known one; every problem of a config is reported at once, one line each.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path
from typing import Any

import json5

from utils.schema import CantorConfig, relation_errors

_PLACEHOLDER = re.compile(r"^\s*\[.*\]\s*$")
# Keys of Cantor's earlier layout -> where the published recipe's layout keeps them (an unknown key
# is still an error; this only makes its "did you mean" exact).
_MOVED = {
    "processed_dir": "preprocess.processed_dir",
    "train.learning_rate": "train.adamw.lr", "train.betas": "train.adamw.betas",
    "train.weight_decay": "train.adamw.weight_decay",
    "model.encoder": "model.comosvc (input_dim, n_heads, n_layers, filter_channels, ...)",
    "model.condition_encoder.hidden_size": "model.comosvc.input_dim",
    "inference.inference_steps": "inference.comosvc.inference_steps",
    "inference.student_inference_steps": "inference.comosvc.student_inference_steps",
    "inference.sampler": "inference.comosvc.sampler",
}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says where and why (one line per
    problem when there are several)."""


def _read_json5(path: Path, referrer: str | None = None) -> dict:
    by = f" (the base_config of {referrer})" if referrer else ""
    if path.is_dir():
        raise ConfigError(f"{path}{by}: is a folder, not a config file")
    try:
        data = json5.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}{by}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}{by}: cannot be read: {e}") from None
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
    data = _read_json5(path, str(seen[-1]) if seen else None)
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


def _range_text(bounds) -> str:
    ge, gt, le, lt = bounds
    parts = [f">= {ge}" if ge is not None else None, f"> {gt}" if gt is not None else None,
             f"<= {le}" if le is not None else None, f"< {lt}" if lt is not None else None]
    return " and ".join(p for p in parts if p)


def _in_range(value, bounds) -> bool:
    ge, gt, le, lt = bounds
    return not ((ge is not None and value < ge) or (gt is not None and value <= gt)
                or (le is not None and value > le) or (lt is not None and value >= lt))


_DOTTED_KEY = re.compile(r"\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\b")


class _Validator:
    """One pass over a merged config dict: builds the dataclasses and collects every problem
    (unknown key, wrong type, value outside its choices or range, NaN/inf, a placeholder) as one
    line each; ``refused`` holds the dotted paths (and their parents) whose value was refused and
    replaced by the default."""

    def __init__(self, origin: dict, skip_placeholders=lambda path: False):
        self.origin, self.errors = origin, []
        self.skip_placeholders = skip_placeholders
        self.refused: set[str] = set()

    def error(self, path: tuple, text: str) -> None:
        self.errors.append(f"{self.origin.get(path, 'defaults')}: {text}")
        self.refused.update(".".join(path[:n]) for n in range(1, len(path) + 1))

    def involves_refused(self, key: str, message: str) -> bool:
        """Whether the relation check ``key`` / ``message`` (:func:`utils.schema.relation_errors`)
        reads a refused value: its key, a dotted key named in the message, or a key of its own
        section named by its last part (e.g. ``search_seconds`` beside ``block_seconds``)."""
        section = key.rpartition(".")[0]
        named = set(_DOTTED_KEY.findall(message)) | {
            f"{section}.{word}" for word in re.findall(r"\b[a-z_][a-z0-9_]*\b", message)}
        return bool(({key} | named) & self.refused)

    def convert(self, value: Any, tp, path: tuple, meta=None):
        """``value`` checked against the annotation ``tp`` (and the field metadata ``meta``) and
        converted (dataclass, float); on an error, recorded, the field's default is kept (None)."""
        where = ".".join(path)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                self.error(path, f"{where} must be an object, got {value!r}")
                return None
            return self.build(tp, value, path)
        base = typing.get_origin(tp)
        if base is list:
            (item,) = typing.get_args(tp)
            if not isinstance(value, list):
                self.error(path, f"{where} must be a list of {_type_name(item)}, got {value!r}")
                return None
            items = [self.convert(v, item, path + (str(i),)) for i, v in enumerate(value)]
            return None if any(v is None for v in items) else items
        if base is dict:
            _, item = typing.get_args(tp)
            if not isinstance(value, dict):
                self.error(path, f"{where} must be an object, got {value!r}")
                return None
            items = {k: self.convert(v, item, path + (k,)) for k, v in value.items()}
            return None if any(v is None for v in items.values()) else items
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if tp is int and isinstance(value, bool) or not isinstance(value, tp):
            self.error(path, f"{where} must be {_type_name(tp)}, got {value!r}")
            return None
        meta = meta or {}
        if tp is float and not math.isfinite(value):
            bounds = f" {_range_text(meta['range'])}" if "range" in meta else ""
            self.error(path, f"{where} = {value!r} must be a finite number{bounds}")
            return None
        if isinstance(value, str) and _PLACEHOLDER.match(value) and not self.skip_placeholders(path):
            self.error(path, f"{where} is still the placeholder {value!r}: set it to a real value")
            return None
        if "choices" in meta and value not in meta["choices"]:
            self.error(path, f"{where} = {value!r} is not one of {', '.join(meta['choices'])}")
            return None
        if "range" in meta and not _in_range(value, meta["range"]):
            self.error(path, f"{where} = {value!r} must be {_range_text(meta['range'])}")
            return None
        return value

    def build(self, cls, data: dict, path: tuple):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for key in data:
            if key not in fields:
                where = ".".join(path + (key,))
                near = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
                if where in _MOVED:
                    hint = f"; did you mean '{_MOVED[where]}'? (the recipe's layout)"
                elif near:
                    hint = f"; did you mean '{'.'.join(path + (near[0],))}'?"
                else:
                    hint = f"; known keys here: {', '.join(fields)}"
                self.errors.append(f"{self.origin.get(path + (key,), 'config')}: unknown key "
                                   f"'{where}'{hint}")
        kwargs = {}
        for name, f in fields.items():
            if name in data:
                value = self.convert(data[name], hints[name], path + (name,), f.metadata)
                if value is not None:
                    kwargs[name] = value
        return cls(**kwargs)


def _validate(data: dict, origin: dict, source: str, check_datasets: bool) -> CantorConfig:
    """Build and check a merged config dict; raises one ConfigError listing every problem."""
    listed = data.get("dataset") if isinstance(data.get("dataset"), list) else []

    def skip(path: tuple) -> bool:
        if path[:1] in (("dataset_path",), ("dataset_type",)):
            return not check_datasets or (len(path) == 2 and path[1] not in listed)
        return False

    v = _Validator(origin, skip)
    cfg = v.build(CantorConfig, data, ())
    # Relations too, whatever else is wrong, but none that reads a refused value (its default
    # stands in, so the relation would report a value the user did not write).
    v.errors += [f"{origin.get(tuple(key.split('.')), source)}: {key} {msg}"
                 for key, msg in relation_errors(cfg) if not v.involves_refused(key, msg)]
    if check_datasets:
        v.errors += [f"{origin.get(('dataset',), source)}: dataset '{name}' has no dataset_path "
                     f"entry" for name in cfg.dataset
                     if name not in (data.get("dataset_path") or {})]
    if v.errors:
        if len(v.errors) == 1:
            raise ConfigError(v.errors[0])
        raise ConfigError(f"{len(v.errors)} problems in the config:\n" +
                          "\n".join(f"  {e}" for e in v.errors))
    return cfg


def config_from_dict(data: dict, source: str = "config", check_datasets: bool = False) -> CantorConfig:
    """Validate a plain (already merged) dict, e.g. an experiment's ``args.json`` (same errors as
    :func:`load_config`; dataset paths are not checked unless ``check_datasets``)."""
    origin: dict = {}
    _record(data, origin, source, ())
    return _validate(data, origin, source, check_datasets)


def load_config(path: str | Path, overrides: list[str] = (), check_datasets: bool = False
                ) -> CantorConfig:
    """Load ``path`` with its ``base_config`` chain and ``--set`` overrides, validated.

    Args:
        check_datasets: True for stage 1 (and ``cantor check-config``), which needs a real
            ``dataset_path`` for each dataset listed in ``dataset``; stages 2-3 read the processed
            data and leave it False, so dataset settings are not checked. Entries of datasets not
            listed in ``dataset`` are never checked.
    Raises:
        ConfigError: a missing, unreadable or unparsable file (naming the config whose
            base_config points to it), or every problem of the merged config at once, one line
            each: unknown key (with the nearest known key), wrong type, a value outside its
            choices or range, NaN or inf for any float, a relation between keys
            (:func:`utils.schema.relation_errors`, checked whatever else is wrong unless it reads
            a refused value), a placeholder such as ``"[Opencpop path]"``.
    """
    origin: dict = {}
    merged = _load_tree(Path(path), origin)
    for text in overrides:
        _merge(merged, parse_override(text), origin, f"--set {text}")
    return _validate(merged, origin, str(path), check_datasets)


def config_to_dict(cfg: CantorConfig) -> dict:
    """Plain dict of a config, as written to an experiment's ``args.json``."""
    return dataclasses.asdict(cfg)
