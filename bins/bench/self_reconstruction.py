"""Quick self-reconstruction check of a DiffComoSVC checkpoint on the held-out split (issue 13):
each test utterance resynthesised as its own singer from its own features (same timing, no
alignment), scored against its real mel:

- ``l1``: mean |mel - real| of the normalised mels ([-1, 1]);
- ``mcd``: mel-cepstral distortion (dB) of the cepstra c1..c24 of the natural-log mels, in the
  cepstrum's own scaling (log X_n = c_0 + 2 sum_d c_d cos(pi d (n + 1/2) / N) over the N mel bins,
  i.e. c_d = (1 / N) sum_n log X_n cos(pi d (n + 1/2) / N)), 10 / ln 10 * sqrt(2 sum_d (dc_d)^2)
  per frame, mean over frames (Kubichek 1993); a quick mel-domain figure, not the WORLD-envelope
  MCD of ``cantor eval``;
- ``gv_db``: global variance, mean over bins of 10 log10(var_t(mel) / var_t(real)) (Toda et al.
  2007); the normalisation is affine per bin, so this equals the ratio on log-mels. A smoothed
  spectrum is below 0.

Rows: ``mu`` (the coarse mel) and one per sampler setting: teacher steps (Euler or the config's
sampler), optionally shallow (``--shallow S``: start at sigma S from the noised mu), or student
consistency steps for a distillation export. ``--raw`` scores a training checkpoint's own weights
instead of its weight EMA. Means over utterances; one fixed noise seed.

    python3 bins/bench/self_reconstruction.py CKPT --config CFG [--steps 40 10 4] [--shallow 1 2]
        [--raw] [--output_tsv FILE]

CKPT: a checkpoint file or experiment folder (its newest checkpoint; a student's export).
"""
from __future__ import annotations

import argparse
import math
import sys

N_CEPSTRA = 24


def _dct_matrix(n: int, k: int):
    """(k, n) rows d = 0 .. k-1 of the cepstrum c_d = (1 / n) sum_i x_i cos(pi d (i + 1/2) / n)."""
    import torch
    i = torch.arange(n, dtype=torch.float64)
    return torch.stack([torch.cos(math.pi * d * (i + 0.5) / n) / n for d in range(k)])


def scores(mel, real, log_mel, log_real, dct) -> dict[str, float]:
    """l1, mcd, gv_db of one utterance: normalised (n_mel, T) and natural-log (n_mel, T) mels."""
    import torch
    l1 = float((mel - real).abs().mean())
    c = dct @ (log_mel.double() - log_real.double())  # (k, T)
    mcd = float((10.0 / math.log(10.0)) * torch.sqrt(2.0 * (c[1:] ** 2).sum(0)).mean())
    var_ratio = mel.double().var(dim=1) / real.double().var(dim=1).clamp(min=1e-12)
    gv = float((10.0 * torch.log10(var_ratio.clamp(min=1e-12))).mean())
    return {"l1": l1, "mcd": mcd, "gv_db": gv}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", required=True, help="the experiment config (data paths)")
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 10, 4])
    parser.add_argument("--shallow", type=float, nargs="*", default=[],
                        help="also sample from these start sigmas (shallow diffusion)")
    parser.add_argument("--raw", action="store_true", help="a training checkpoint's own weights, "
                        "not its weight EMA")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--output_tsv")
    args = parser.parse_args(argv)

    import torch
    from models.base.checkpoint import load_checkpoint, resolve_checkpoint
    from models.base.dataset import SVCDataset, collate, denormalize_mel
    from models.svc.comosvc.model import ComoSVC
    from utils.config import config_from_dict, load_config
    from utils.paths import resolve_path

    path = resolve_checkpoint(resolve_path(args.checkpoint), "checkpoint")
    state = load_checkpoint(path)
    data_cfg = load_config(args.config, args.overrides)
    cfg = config_from_dict(state["config"])
    cfg.preprocess.processed_dir = data_cfg.preprocess.processed_dir
    model = ComoSVC(cfg)
    weights = state["model"]
    if args.raw:
        weights = {k: v for k, v in state["training"]["model"].items()
                   if not k.startswith("weight_ema.")}
    model.load_state_dict(weights)
    model.eval()
    student = bool(state["student"])
    data = SVCDataset(cfg, "test", False, state["singers"], state["statistics"])
    dct = _dct_matrix(cfg.preprocess.n_mel, N_CEPSTRA + 1)
    settings = [("mu", None, None)] + [(f"{'student' if student else 'teacher'} {n} steps", n, None)
                                       for n in args.steps]
    settings += [(f"shallow sigma {s}, {n} steps", n, s) for s in args.shallow for n in args.steps]
    sums = {name: {"l1": 0.0, "mcd": 0.0, "gv_db": 0.0} for name, _, _ in settings}
    with torch.no_grad():
        for i in range(len(data)):
            batch = collate([data[i]])
            stats = state["statistics"][data.entries[i]["Dataset"]]
            lo = torch.tensor(stats["mel_min"])[:, None]
            hi = torch.tensor(stats["mel_max"])[:, None]
            real = batch["mel"][0]
            for name, steps, start in settings:
                if steps is None:
                    mel = model.encode(batch)[0]
                else:
                    cfg.inference.comosvc.shallow_sigma = start or 0.0
                    mel = model.sample(batch, steps=steps, student=student,
                                       generator=torch.Generator().manual_seed(7))["mel"][0]
                s = scores(mel, real, denormalize_mel(mel, lo, hi), denormalize_mel(real, lo, hi),
                           dct)
                for k, v in s.items():
                    sums[name][k] += v / len(data)
    lines = ["setting\tl1\tmcd_db\tgv_db"] + [
        f"{name}\t{v['l1']:.3f}\t{v['mcd']:.2f}\t{v['gv_db']:+.2f}" for name, v in sums.items()]
    print(f"# {path} ({'raw weights' if args.raw else 'export'}), {len(data)} test utterances")
    print("\n".join(lines))
    if args.output_tsv:
        from utils.io import atomic_write
        atomic_write(args.output_tsv, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
