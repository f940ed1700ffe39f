"""Singer mixes: ``-s "A:0.7,B:0.3"`` converts to a weighted mix of singer embeddings (the
DDSP-SVC ``-mix`` / so-vits-svc ``spk_mix`` habit).

A target is either a plain singer name (a key of the experiment's singer table) or comma-separated
``NAME:WEIGHT`` parts (a part without ``:WEIGHT`` weighs 1). Weights are normalised to sum to 1 and
the parts sorted by weight, heaviest first (ties keep their order): the heaviest singer is the
mix's *primary* singer, whose dataset statistics de-normalise DiffComoSVC's mel. A mix that names a
single singer is that singer (the plain path, bit for bit: no mixing tensor at all).

The models embed a mix as the weighted sum of the rows of their singer table
(modules/singer_embedding.py); autoshift aims at the weighted mean of the singers' median F0 on the
semitone scale (:func:`mix_f0_median`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import torch


class SingerMixError(ValueError):
    """A target that names unknown singers or has a malformed weight (one line, listing the known
    singers)."""


@dataclass(frozen=True)
class SingerMix:
    """A parsed target: ``names`` heaviest first, ``weights`` (same order) summing to 1.

    Attributes: ``primary`` (the heaviest name), ``single`` (one singer: the plain path).
    """

    names: tuple[str, ...]
    weights: tuple[float, ...]

    @property
    def primary(self) -> str:
        return self.names[0]

    @property
    def single(self) -> bool:
        return len(self.names) == 1

    def table_weights(self, singers: Mapping[str, int], table_size: int) -> torch.Tensor:
        """(table_size,) float32 weight of every singer id (0 for singers outside the mix)."""
        weights = torch.zeros(table_size, dtype=torch.float32)
        for name, w in zip(self.names, self.weights):
            weights[singers[name]] = w
        return weights


def parse_singer_mix(text: str, known: Iterable[str]) -> SingerMix:
    """The :class:`SingerMix` of a target ``text`` (module docstring) among the ``known`` names.

    Raises: SingerMixError listing every unknown name and the known ones, or naming a weight that
        is not a finite number above 0, or a singer named twice.
    """
    known = list(known)
    text = text.strip()
    if text in known:
        return SingerMix((text,), (1.0,))
    parts: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight_text = part.strip().rpartition(":")
        if not sep:
            name, weight_text = weight_text, "1"
        name = name.strip()
        try:
            weight = float(weight_text)
        except ValueError:
            weight = float("nan")
        if not (math.isfinite(weight) and weight > 0):
            raise SingerMixError(f"target singer mix {text!r}: weight {weight_text.strip()!r} of "
                                 f"{name!r} must be a number above 0 (e.g. \"A:0.7,B:0.3\")")
        if name in parts:
            raise SingerMixError(f"target singer mix {text!r}: {name!r} is named twice")
        parts[name] = weight
    unknown = [n for n in parts if n not in known]
    if unknown:
        raise SingerMixError(f"unknown target singer{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; this experiment knows: "
                             f"{', '.join(sorted(known))}")
    total = sum(parts.values())
    order = sorted(parts, key=lambda n: -parts[n])
    if len(order) == 1:
        return SingerMix((order[0],), (1.0,))
    return SingerMix(tuple(order), tuple(parts[n] / total for n in order))


def mix_f0_median(mix: SingerMix, medians: Mapping[str, float]) -> float:
    """Autoshift's target median F0 (Hz) of ``mix``: the weighted mean of the singers' medians
    (``medians[name]``, Hz) on the semitone scale, 2^(sum w_i log2 m_i); the singer's own median
    for a single singer."""
    if mix.single:
        return float(medians[mix.primary])
    return float(2.0 ** sum(w * math.log2(medians[n]) for n, w in zip(mix.names, mix.weights)))


def file_label(target: str) -> str:
    """``target`` as it appears in output file names: a mix's ``:`` and ``,`` become ``=`` and
    ``+`` ("A:0.7,B:0.3" -> "A=0.7+B=0.3"); a plain name is unchanged."""
    return target.strip().replace(" ", "").replace(":", "=").replace(",", "+")
