"""Stage 2 training speed: optimizer steps per second, peak memory and parameter counts of the
DiffComoSVC teacher and of its distillation, for the demo and the full-size configs.

    python bins/bench/bench_train.py [--which demo full] [--steps 5] [--warmup 1]
        [--batch_size N] [--max_frames N] [--threads N] [--set KEY=VALUE ...]

Each (config, mode) runs in its own process (so peak RSS is its own) through the real trainer on a
synthetic stage 1 output of full-length utterances (every batch is batch_size x max_frames), with
validation and intermediate checkpoints off. Steps/s is measured from the TensorBoard wall times of
steps warmup+1 .. warmup+steps. The distillation run distils the teacher run's random-weight
checkpoint. Runs on CUDA when present (then also reports peak allocated GPU memory). Prints one
line per run and a table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {"demo": "egs/svc/DiffComoSVC/exp_config_demo.json", "full": "config/comosvc.json"}


def _one_run(args: argparse.Namespace) -> dict:
    """Train ``warmup + steps`` steps of one (config, mode) in this process; return the figures."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from models.svc.comosvc.model import count_parameters
    from models.svc.comosvc.trainer import ComoSVCTrainer
    from tests.synthetic_processed import DATASET, write_processed_dir
    from utils.config import load_config
    from utils.paths import PROJECT_ROOT

    if args.threads:
        torch.set_num_threads(args.threads)
    (which,) = args.which
    work = Path(args.work)
    sets = [f"preprocess.processed_dir={work / 'processed'}", f"log_dir={work / 'logs'}",
            f"dataset=['{DATASET}']", "train.valid_every_steps=1000000000",
            "train.save_every_steps=1000000000", "train.log_every_steps=1",
            f"train.max_steps={args.warmup + args.steps}", "train.dataloader_workers=0"]
    sets += [f"train.batch_size={args.batch_size}"] if args.batch_size else []
    sets += [f"train.max_frames={args.max_frames}"] if args.max_frames else []
    sets += args.overrides
    if args.mode == "distill":
        sets += ["model.comosvc.distill=true", f"model.teacher_model_path={work / 'logs' / 'teacher'}"]
    cfg = load_config(PROJECT_ROOT / CONFIGS[which], sets)
    p, ce, t = cfg.preprocess, cfg.model.condition_encoder, cfg.train
    if not (work / "processed" / "singers.json").exists():
        dims = {name: getattr(ce, f"{name}_dim") for name in p.content_features}
        write_processed_dir(work / "processed", p.n_mel, dims, p.hop_size, p.sample_rate,
                            [t.max_frames + 8] * (2 * t.batch_size + 2))
    trainer = ComoSVCTrainer(cfg, args.mode)
    trainer.train()
    acc = EventAccumulator(str(trainer.exp_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    wall = {e.step: e.wall_time for e in acc.Scalars("train/loss")}
    first, last = args.warmup, args.warmup + args.steps
    out = {"config": which, "mode": args.mode, "device": str(trainer.acc.device),
           "threads": torch.get_num_threads(), "batch_size": t.batch_size,
           "max_frames": t.max_frames,
           "params_M": count_parameters(trainer.model) / 1e6,
           "trained_params_M": sum(q.numel() for ps in trainer.params.values() for q in ps) / 1e6,
           "steps_per_s": args.steps / (wall[last] - wall[first]),
           "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    if torch.cuda.is_available():
        out["peak_gpu_GiB"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--modes", nargs="+", choices=("teacher", "distill"),
                        default=["teacher", "distill"])
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (>= 1)")
    parser.add_argument("--batch_size", type=int, default=0, help="0: the config's")
    parser.add_argument("--max_frames", type=int, default=0, help="0: the config's")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, e.g. --set train.compile=true")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    if args.mode:  # child process: one run
        print("RESULT " + json.dumps(_one_run(args)), flush=True)
        return 0
    results = []
    for which in args.which:
        with tempfile.TemporaryDirectory(prefix=f"bench_train_{which}_") as work:
            for mode in ("teacher", "distill"):  # distill needs the teacher's checkpoint
                if mode == "distill" and "distill" not in args.modes:
                    continue
                cmd = [sys.executable, __file__, "--which", which, "--mode", mode, "--work", work,
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--batch_size", str(args.batch_size), "--max_frames", str(args.max_frames),
                       "--threads", str(args.threads)] + [a for o in args.overrides for a in ("--set", o)]
                run = subprocess.run(cmd, capture_output=True, text=True)
                line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
                if run.returncode or not line:
                    print(run.stderr[-3000:], file=sys.stderr)
                    return 1
                res = json.loads(line[0][len("RESULT "):])
                if mode in args.modes:
                    results.append(res)
                    print(json.dumps(res), flush=True)
    print(f"\n{'config':6} {'mode':8} {'device':6} {'batch':>9} {'params M':>9} {'trained M':>9} "
          f"{'steps/s':>8} {'peak RSS GiB':>12}")
    for r in results:
        print(f"{r['config']:6} {r['mode']:8} {r['device']:6} {r['batch_size']:>4}x{r['max_frames']:<4} "
              f"{r['params_M']:9.2f} {r['trained_params_M']:9.2f} {r['steps_per_s']:8.3f} "
              f"{r['peak_rss_GiB']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
