"""The config a conversion runs with: the checkpoint's own, plus the few settings a user may choose
on this machine (:data:`USER_KEYS`)."""
from __future__ import annotations

import copy
import logging
from typing import Sequence

from utils.config import config_from_dict, config_to_dict, parse_override
from utils.schema import CantorConfig

log = logging.getLogger(__name__)

# Config keys a conversion may take from the user instead of the checkpoint: settings of the
# conversion itself (the pitch tracker too: F0 is in Hz whichever tracker measured it) and where
# this machine keeps the content models' weights.
USER_KEYS = (("inference",), ("vocoder",), ("preprocess", "whisper_path"),
             ("preprocess", "contentvec_path"), ("preprocess", "content_batch_size"),
             ("preprocess", "f0_extractor"))


def _get(d: dict, path: tuple):
    for key in path:
        d = d[key]
    return d


def _set(d: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        d = d.setdefault(key, {})
    d[path[-1]] = value


def _flatten(d: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _user_key(path: tuple) -> bool:
    return any(path[:len(k)] == k for k in USER_KEYS)


def conversion_config(checkpoint_config: dict, user_config: CantorConfig | None = None,
                      overrides: Sequence[str] = ()) -> CantorConfig:
    """The config a conversion runs with: the checkpoint's, with :data:`USER_KEYS` taken from
    ``user_config`` (when given) and then from ``overrides`` ("KEY.PATH=VALUE").

    Differences between ``user_config`` and the checkpoint in other model/preprocess keys, and
    overrides of keys outside USER_KEYS, are logged as warnings and not applied: the weights only
    fit the settings they were trained with. A content model path that differs from the
    checkpoint's is used, with a warning (it must name the same weights on this machine).
    Raises: ConfigError for a malformed override or an invalid result (e.g. a vocoder that does not
        match the checkpoint's preprocessing).
    """
    merged = copy.deepcopy(checkpoint_config)
    if user_config is not None:
        user = config_to_dict(user_config)
        for path in USER_KEYS:
            _set(merged, path, _get(user, path))
        ckpt, mine = _flatten(checkpoint_config), _flatten(user)
        for name in ckpt.get(("preprocess", "content_features"), []):
            path = ("preprocess", f"{name}_path")
            if path in ckpt and ckpt[path] != mine[path]:
                log.warning("%s: using %s from the config given; the model was trained on "
                            "features of %s, which must be the same weights", ".".join(path),
                            mine[path], ckpt[path])
        differ = [".".join(p) for p in ckpt if p[0] in ("model", "preprocess") and not _user_key(p)
                  and p[-1] not in ("distill", "teacher_model_path") and ckpt[p] != mine.get(p)]
        if differ:
            log.warning("the config given differs from the checkpoint's in %s; conversion uses the "
                        "checkpoint's settings (the weights were trained with them)",
                        ", ".join(differ))
    for text in overrides:
        for path, value in _flatten(parse_override(text)).items():
            if _user_key(path):
                _set(merged, path, value)
            else:
                log.warning("--set %s ignored: conversion takes %s from the checkpoint; only "
                            "inference.*, vocoder.*, preprocess.f0_extractor and the content "
                            "weight paths can be set",
                            text, ".".join(path))
    return config_from_dict(merged, "conversion config (checkpoint + user settings)")
