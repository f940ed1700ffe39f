"""The condition encoder of DiffComoSVC: pitch, loudness, content and singer identity, each embedded
to ``hidden_size`` and summed frame by frame (the "add" merge of Amphion's SVC condition encoder,
Zhang et al. 2023, "Leveraging Diverse Semantic-based Audio Pretrained Models for Singing Voice
Conversion"; Lu et al. 2024, CoMoSVC).

- F0 (Hz) is quantised on the mel scale, m(f) = 1127 ln(1 + f / 700) (O'Shaughnessy 1987), into
  ``f0_bins`` bins: bin 0 holds unvoiced frames, bins 1 .. f0_bins - 1 split
  [m(f0_min), m(f0_max)] evenly (frequencies outside are clamped to the end bins). A separate
  two-row embedding adds the voiced/unvoiced flag.
- Energy (the L2 norm of a linear mel column, processors/mel.py) is bucketed on its natural log over
  the dataset's real range [log_energy_min, log_energy_max] (statistics.json) into ``energy_bins``
  buckets, so that every bucket is used (a fixed 1e-30..1.5 grid leaves most of them empty).
- Each content feature named in ``preprocess.content_features`` goes through a Linear layer.
- The singer id indexes an embedding table broadcast over time.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from modules.singer_embedding import embed_singers
from utils.schema import CantorConfig

# Floor applied to the energy before its log (the mel magnitude floor keeps real frames far above).
ENERGY_FLOOR = 1e-10


def hz_to_mel(f0: torch.Tensor) -> torch.Tensor:
    """Mel scale m = 1127 ln(1 + f / 700) of frequencies in Hz (any shape, same shape out)."""
    return 1127.0 * torch.log1p(f0 / 700.0)


def quantise_f0(f0: torch.Tensor, uv: torch.Tensor, n_bins: int, f0_min: float,
                f0_max: float) -> torch.Tensor:
    """Mel-scale F0 bin of every frame.

    Args:
        f0: (B, T) Hz, 0 where unvoiced.
        uv: (B, T) bool, True = unvoiced.
        n_bins: number of bins (>= 3); bin 0 is reserved for unvoiced frames.
        f0_min, f0_max: Hz range split evenly on the mel scale into bins 1 .. n_bins - 1.
    Returns:
        (B, T) long in [0, n_bins - 1].
    """
    lo, hi = (1127.0 * math.log1p(f / 700.0) for f in (f0_min, f0_max))
    pos = (hz_to_mel(f0.clamp(min=0.0)) - lo) / (hi - lo) * (n_bins - 2)
    bins = 1 + torch.round(pos).clamp(0, n_bins - 2).long()
    return torch.where(uv | (f0 <= 0), torch.zeros_like(bins), bins)


class ConditionEncoder(nn.Module):
    """Frame-level conditioning of the acoustic model.

    Args:
        cfg: the experiment config; reads ``model.condition_encoder`` (f0_bins,
            energy_bins, singer_table_size, <name>_dim of each content feature) and
            ``preprocess`` (f0_min, f0_max, content_features).
        hidden_size: width of every embedding and of the summed output (DiffComoSVC:
            ``model.comosvc.input_dim``).
    Raises:
        ValueError: an unknown content feature name (no ``<name>_dim`` key in the schema).

    The log-energy range is a buffer pair saved in the state dict; it starts undefined (NaN) and is
    set once from statistics.json with :meth:`set_energy_range` (or by loading a state dict).

    Input checks without device-to-host syncs: with ``defer_checks`` False (the default) a singer id
    outside the table raises at once, which needs the ids on the host. The trainer sets
    ``defer_checks`` True: ids outside the table are then clamped into it (no device-side assert),
    remembered on the device, and :meth:`raise_deferred_errors` (called every
    ``train.log_every_steps``) raises the same ValueError. Whether the energy range is set is known
    on the host (set at :meth:`set_energy_range` and at state-dict loading), so checking it costs
    no sync either.
    """

    def __init__(self, cfg: CantorConfig, hidden_size: int):
        super().__init__()
        ce = cfg.model.condition_encoder
        self.f0_bins, self.energy_bins = ce.f0_bins, ce.energy_bins
        self.f0_min, self.f0_max = cfg.preprocess.f0_min, cfg.preprocess.f0_max
        self.singer_table_size = ce.singer_table_size
        self.f0_embedding = nn.Embedding(ce.f0_bins, hidden_size)
        self.uv_embedding = nn.Embedding(2, hidden_size)
        self.energy_embedding = nn.Embedding(ce.energy_bins, hidden_size)
        self.singer_embedding = nn.Embedding(ce.singer_table_size, hidden_size)
        self.content_dims: dict[str, int] = {}
        for name in cfg.preprocess.content_features:
            dim = getattr(ce, f"{name}_dim", None)
            if dim is None:
                raise ValueError(f"preprocess.content_features: unknown content feature {name!r} "
                                 f"(no model.condition_encoder.{name}_dim)")
            self.content_dims[name] = dim
        self.content_proj = nn.ModuleDict(
            {name: nn.Linear(dim, hidden_size) for name, dim in self.content_dims.items()})
        self.register_buffer("log_energy_min", torch.tensor(float("nan")))
        self.register_buffer("log_energy_max", torch.tensor(float("nan")))
        self.energy_range_set = False
        self.register_load_state_dict_post_hook(ConditionEncoder._after_load)
        self.defer_checks = False
        # (any id outside the table seen since the last check, one such id), on the device.
        self._deferred: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _after_load(module: "ConditionEncoder", incompatible_keys) -> None:
        module.energy_range_set = bool(torch.isfinite(module.log_energy_min)
                                       & torch.isfinite(module.log_energy_max))

    def set_energy_range(self, log_energy_min: float, log_energy_max: float) -> None:
        """Set the natural-log energy range split into ``energy_bins`` buckets (statistics.json's
        ``log_energy_min`` / ``log_energy_max``).

        Raises: ValueError unless both are finite and min < max.
        """
        lo, hi = float(log_energy_min), float(log_energy_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"log-energy range must be finite with min < max, got [{lo}, {hi}]")
        self.log_energy_min.fill_(lo)
        self.log_energy_max.fill_(hi)
        self.energy_range_set = True

    def energy_bucket(self, energy: torch.Tensor) -> torch.Tensor:
        """(B, T) energy -> (B, T) long bucket in [0, energy_bins - 1]: ln(energy) against
        energy_bins - 1 boundaries evenly spaced over [log_energy_min, log_energy_max].

        Raises: RuntimeError if :meth:`set_energy_range` was never called (nor a state dict loaded).
        """
        if not self.energy_range_set:
            raise RuntimeError("ConditionEncoder: the log-energy range is not set; call "
                               "set_energy_range(log_energy_min, log_energy_max) with the values "
                               "of the dataset's statistics.json, or load a trained state dict")
        steps = torch.linspace(0.0, 1.0, self.energy_bins - 1, device=energy.device)
        edges = self.log_energy_min + steps * (self.log_energy_max - self.log_energy_min)
        return torch.bucketize(torch.log(energy.float().clamp(min=ENERGY_FLOOR)), edges)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the embeddings.

        Args:
            batch: "f0" (B, T) Hz; "uv" (B, T) bool (True = unvoiced); "energy" (B, T);
                "singer" (B,) long (optionally "singer_weights" (B, singer_table_size), a mix of
                singers: modules/singer_embedding.py); one (B, T, D) tensor per content feature;
                "mask" (B, T) bool.
        Returns:
            (B, T, hidden_size), zero on padded frames.
        Raises:
            ValueError: a content feature of the wrong size or (unless ``defer_checks``) a singer id
                outside the table.
            KeyError: a missing batch entry.
        """
        mask = batch["mask"]
        uv = batch["uv"].bool()
        h = self.f0_embedding(quantise_f0(batch["f0"], uv, self.f0_bins, self.f0_min, self.f0_max))
        h = h + self.uv_embedding(uv.long())
        h = h + self.energy_embedding(self.energy_bucket(batch["energy"]))
        for name, proj in self.content_proj.items():
            feat = batch[name]
            if feat.shape[-1] != self.content_dims[name]:
                raise ValueError(f"content feature {name!r} has size {feat.shape[-1]}, the config "
                                 f"says model.condition_encoder.{name}_dim = "
                                 f"{self.content_dims[name]}")
            h = h + proj(feat)
        singer = self._checked_singer(batch["singer"].long())
        h = h + embed_singers(self.singer_embedding, batch, singer)[:, None, :]
        return h * mask[..., None].to(h.dtype)

    def _singer_error(self, singer_id: int) -> ValueError:
        return ValueError(f"singer id {singer_id} outside the embedding table "
                          f"(model.condition_encoder.singer_table_size = {self.singer_table_size})")

    def _checked_singer(self, singer: torch.Tensor) -> torch.Tensor:
        """(B,) ids, checked against the table now or, with ``defer_checks``, later (class doc)."""
        outside = (singer < 0) | (singer >= self.singer_table_size)
        if not self.defer_checks:
            if singer.numel() and bool(outside.any()):
                raise self._singer_error(int(singer[outside][0]))
            return singer
        if singer.numel():
            # gather, not singer[tensor]: indexing with a 0-d tensor reads it on the host.
            seen, example = outside.any(), singer.gather(0, outside.long().argmax()[None])[0]
            if self._deferred is not None:
                seen, example = (seen | self._deferred[0],
                                 torch.where(self._deferred[0], self._deferred[1], example))
            self._deferred = (seen, example)
        return singer.clamp(0, self.singer_table_size - 1)

    def raise_deferred_errors(self) -> None:
        """Raise the ValueError of a singer id outside the table seen since the last call (with
        ``defer_checks``); one device-to-host sync. Clears what was remembered."""
        deferred, self._deferred = self._deferred, None
        if deferred is not None and bool(deferred[0]):
            raise self._singer_error(int(deferred[1]))
