"""Device check of the stage 2 / stage 3 GPU path on one GPU (sized for under 8 minutes on an
H100/H200; not yet run on one):

    python bins/bench/gpu_check.py [--smoke] [--out FILE.json]

1. teacher training through the real trainer (config/comosvc.json, full size) at batch 32 x 512
   frames, in bf16 and in fp32 (TF32 on): optimizer steps/s over the steps after a warm-up, peak
   allocated GPU memory;
2. distillation of that (random-weight) teacher in bf16: steps/s, peak memory;
3. a training-step sync check: steps between two logs run under
   ``torch.cuda.set_sync_debug_mode("error")``, which raises on a device-to-host sync;
4. conversion real-time factor on 60 s of audio, split as stage 3 splits it
   (inference.chunk_seconds chunks with inference.chunk_overlap, inference.batch_size at a time):
   the 40-step teacher and the 1-step student acoustic model, and a random-weight BigVGAN with the
   topology of NVIDIA's bigvgan_v2_24khz_100band_256x (content features and F0 extraction not
   included);
5. bf16 against fp32 over 200 teacher steps (full-size model, batch 16 x 256 frames, same seed):
   the mean loss of the first and last 20 steps of each; "ok" when both fall by 10 % or more and
   the last means differ by under 5 %.

The data are a synthetic stage 1 output (tests/synthetic_processed.py) with the full-size feature
sizes. ``--smoke`` runs everything at toy size and step counts on whatever device there is (CPU:
bf16 through torch's CPU autocast; 4 teacher steps, learning rate 3e-3), in seconds: the test
suite runs it. Prints one JSON line per
result and a summary; ``--out`` also writes them to a file.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from pathlib import Path

# (full, smoke) sizes.
SIZES = {
    "throughput": ({"batch_size": 32, "max_frames": 512, "warmup": 10, "timed": 30},
                   {"batch_size": 2, "max_frames": 32, "warmup": 1, "timed": 2}),
    "curve": ({"batch_size": 16, "max_frames": 256, "steps": 200, "window": 20},
              {"batch_size": 2, "max_frames": 32, "steps": 12, "window": 3}),
    "audio_seconds": (60.0, 2.0),
}
SMOKE_MODEL = ["preprocess.n_mel=16", "model.comosvc.output_dim=16", "model.comosvc.input_dim=16",
               "model.comosvc.n_layers=1", "model.comosvc.filter_channels=16",
               "model.comosvc.n_res_blocks=2", "model.comosvc.residual_channels=16",
               "model.comosvc.n_timesteps=8", "model.condition_encoder.whisper_dim=8",
               "model.condition_encoder.contentvec_dim=8", "model.condition_encoder.singer_table_size=4",
               "train.adamw.lr=3e-3", "inference.comosvc.inference_steps=4"]
# NVIDIA's bigvgan_v2_24khz_100band_256x generator topology.
BIGVGAN_24K = {"upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
               "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
               "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]]}
BIGVGAN_SMOKE = {"upsample_rates": [8, 8, 4], "upsample_kernel_sizes": [16, 16, 8],
                 "upsample_initial_channel": 32, "resblock_kernel_sizes": [3],
                 "resblock_dilation_sizes": [[1, 3]]}


class Check:
    """One run of the device check: a work folder with the synthetic data, the config overrides
    of the chosen size, and the results printed as they come."""

    def __init__(self, work: Path, smoke: bool):
        import torch

        from utils.paths import PROJECT_ROOT

        self.work, self.smoke = work, smoke
        self.index = 1 if smoke else 0
        self.config = PROJECT_ROOT / "config" / "comosvc.json"
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.results: list[dict] = []

    def size(self, key: str):
        return SIZES[key][self.index]

    def sets(self, data: str, batch_size: int, max_frames: int, steps: int, log_every: int) -> list[str]:
        import os

        from tests.synthetic_processed import DATASET
        workers = 0 if self.smoke else min(8, (os.cpu_count() or 2) // 2)
        return (SMOKE_MODEL if self.smoke else []) + [
            f"preprocess.processed_dir={self.work / data}", f"log_dir={self.work / 'logs'}",
            f"dataset=['{DATASET}']", "train.valid_every_steps=1000000000",
            "train.save_every_steps=1000000000", f"train.log_every_steps={log_every}",
            f"train.max_steps={steps}", f"train.dataloader_workers={workers}",
            f"train.batch_size={batch_size}", f"train.max_frames={max_frames}"]

    def data(self, name: str, batch_size: int, max_frames: int) -> str:
        """A synthetic processed_dir of 2 * batch_size + 2 full-length utterances."""
        from tests.synthetic_processed import write_processed_dir
        from utils.config import load_config
        root = self.work / name
        if not (root / "singers.json").exists():
            cfg = load_config(self.config, SMOKE_MODEL if self.smoke else [])
            p, ce = cfg.preprocess, cfg.model.condition_encoder
            dims = {n: getattr(ce, f"{n}_dim") for n in p.content_features}
            write_processed_dir(root, p.n_mel, dims, p.hop_size, p.sample_rate,
                                [max_frames + 8] * (2 * batch_size + 2))
        return name

    def report(self, result: dict) -> None:
        self.results.append(result)
        print(json.dumps(result), flush=True)

    def train(self, name: str, sets: list[str], sync_check: bool = False) -> dict:
        """Run the real trainer; returns {step: (perf_counter, mean loss)} at every logged step
        and the trainer. With ``sync_check`` (CUDA only) the steps after the first log run under
        ``torch.cuda.set_sync_debug_mode("error")``, switched off around each log and the save."""
        import torch
        from accelerate.state import AcceleratorState

        from models.svc.comosvc.trainer import ComoSVCTrainer
        from utils.config import load_config

        AcceleratorState._reset_state()  # a new mixed precision in this process
        trainer = ComoSVCTrainer(load_config(self.config, sets), name)
        logged: dict[int, tuple[float, float]] = {}
        log_train, save = trainer._log_train, trainer.save

        def timed_log(means, grad_norm):
            if sync_check:
                torch.cuda.set_sync_debug_mode(0)
            values = log_train(means, grad_norm)
            logged[trainer.step] = (time.perf_counter(), values["loss"])
            if sync_check:
                torch.cuda.set_sync_debug_mode("error")
            return values

        def quiet_save():
            if sync_check:
                torch.cuda.set_sync_debug_mode(0)
            save()

        trainer._log_train, trainer.save = timed_log, quiet_save
        if self.cuda:
            gc.collect()  # the previous run's model and optimizer
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            trainer.train()
        finally:
            if self.cuda:
                torch.cuda.set_sync_debug_mode(0)
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if self.cuda else None
        return {"logged": logged, "trainer": trainer, "peak_gpu_GiB": peak}

    def throughput(self, mode: str, precision: str) -> None:
        s = self.size("throughput")
        data = self.data("data_throughput", s["batch_size"], s["max_frames"])
        steps = s["warmup"] + s["timed"]
        sets = self.sets(data, s["batch_size"], s["max_frames"], steps, s["warmup"])
        sets.append(f"train.mixed_precision={precision}")
        if mode == "distill":
            sets += ["model.comosvc.distill=true",
                     f"model.teacher_model_path={self.work / 'logs' / 'teacher_bf16'}"]
        run = self.train(f"{mode}_{precision}", sets)
        t0, t1 = run["logged"][s["warmup"]][0], run["logged"][steps][0]
        trainer = run["trainer"]
        self.report({"check": f"{mode} training", "mixed_precision": precision,
                     "device": str(trainer.acc.device), "batch": f"{s['batch_size']}x{s['max_frames']}",
                     "trained_params_M": round(sum(p.numel() for ps in trainer.params.values()
                                                   for p in ps) / 1e6, 2),
                     "steps_per_s": round(s["timed"] / (t1 - t0), 3),
                     "peak_gpu_GiB": None if run["peak_gpu_GiB"] is None else round(run["peak_gpu_GiB"], 2)})

    def sync_check(self) -> None:
        """Steps 3-4, 5-6 and 7-8 of a teacher run (between its logs) under the sync debug mode
        (CUDA only)."""
        if not self.cuda:
            self.report({"check": "no device-to-host sync in a training step", "result": "skipped (no CUDA)"})
            return
        s = self.size("throughput")
        data = self.data("data_throughput", s["batch_size"], s["max_frames"])
        sets = self.sets(data, s["batch_size"], s["max_frames"], 8, 2)
        try:
            self.train("sync_check", sets, sync_check=True)
            result = "ok"
        except RuntimeError as e:
            result = f"FAILED: {str(e).splitlines()[0]}"
        self.report({"check": "no device-to-host sync in a training step", "result": result})

    def conversion_rtf(self) -> None:
        import torch

        from models.base.chunking import seconds_to_frames
        from models.svc.comosvc.model import ComoSVC
        from models.vocoders.bigvgan import BigVGANGenerator
        from utils.config import load_config

        cfg = load_config(self.config, SMOKE_MODEL if self.smoke else [])
        p, inf = cfg.preprocess, cfg.inference
        seconds = self.size("audio_seconds")
        chunk = seconds_to_frames(inf.chunk_seconds, p.sample_rate, p.hop_size)
        hop_s = inf.chunk_seconds - inf.chunk_overlap
        n_chunks = max(1, math.ceil((seconds - inf.chunk_overlap) / hop_s))
        if self.smoke:
            chunk = seconds_to_frames(seconds / 2, p.sample_rate, p.hop_size)
            n_chunks = 2
        model = ComoSVC(cfg)
        model.set_energy_range(-5.0, 5.0)
        model.eval().to(self.device)
        vocoder = BigVGANGenerator(p.n_mel, **(BIGVGAN_SMOKE if self.smoke else BIGVGAN_24K)).eval()
        vocoder.to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(0)

        def batch(n: int) -> dict:
            b = {"f0": torch.full((n, chunk), 220.0), "uv": torch.zeros(n, chunk, dtype=torch.bool),
                 "energy": torch.ones(n, chunk), "singer": torch.zeros(n, dtype=torch.long),
                 "mask": torch.ones(n, chunk, dtype=torch.bool)}
            for name in p.content_features:
                dim = getattr(cfg.model.condition_encoder, f"{name}_dim")
                b[name] = torch.randn(n, chunk, dim, generator=torch.Generator().manual_seed(n))
            return {k: v.to(self.device) for k, v in b.items()}

        sizes = [min(inf.batch_size, n_chunks - i) for i in range(0, n_chunks, inf.batch_size)]
        batches = [batch(n) for n in sizes]

        def timed(fn) -> float:
            with torch.no_grad():
                fn(batches[0])  # warm-up: cuDNN autotuning, allocations
                if self.cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for b in batches:
                    fn(b)
                if self.cuda:
                    torch.cuda.synchronize()
            return time.perf_counter() - start

        audio = chunk * n_chunks * p.hop_size / p.sample_rate  # seconds converted, overlaps included
        teacher = timed(lambda b: model.sample(b, steps=inf.comosvc.inference_steps, generator=gen))
        student = timed(lambda b: model.sample(b, steps=inf.comosvc.student_inference_steps,
                                               student=True, generator=gen))
        mel = torch.randn(sizes[0], p.n_mel, chunk, device=self.device)
        voc = timed(lambda b: vocoder(mel[:b["mask"].shape[0]]))
        self.report({"check": "conversion real-time factor (fp32)", "device": str(self.device),
                     "audio_s": round(audio, 2), "chunks": n_chunks,
                     "teacher_steps": inf.comosvc.inference_steps,
                     "teacher_acoustic_rtf": round(teacher / audio, 5),
                     "student_acoustic_rtf": round(student / audio, 5),
                     "bigvgan_rtf": round(voc / audio, 5),
                     "teacher_total_rtf": round((teacher + voc) / audio, 5),
                     "student_total_rtf": round((student + voc) / audio, 5)})

    def loss_curves(self) -> None:
        s = self.size("curve")
        data = self.data("data_curve", s["batch_size"], s["max_frames"])
        w, curves = s["window"], {}
        for precision in ("bf16", "no"):
            sets = self.sets(data, s["batch_size"], s["max_frames"], s["steps"], 1)
            run = self.train(f"curve_{precision}", sets + [f"train.mixed_precision={precision}"])
            losses = [run["logged"][k][1] for k in sorted(run["logged"])]
            curves[precision] = (sum(losses[:w]) / w, sum(losses[-w:]) / w)
        (b0, b1), (f0, f1) = curves["bf16"], curves["no"]
        ok = b1 < 0.9 * b0 and f1 < 0.9 * f0 and abs(b1 - f1) < 0.05 * f1
        self.report({"check": f"bf16 vs fp32 loss over {s['steps']} steps",
                     "batch": f"{s['batch_size']}x{s['max_frames']}",
                     f"bf16_first{w}_last{w}": [round(b0, 4), round(b1, 4)],
                     f"fp32_first{w}_last{w}": [round(f0, 4), round(f1, 4)],
                     "result": "ok" if ok else "FAILED"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes, seconds, any device")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    import torch
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; use --smoke for the CPU check", file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)  # toy sizes run fastest on one thread
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        check = Check(Path(work), args.smoke)
        if check.cuda:
            print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
        check.throughput("teacher", "bf16")
        check.throughput("teacher", "no")
        check.throughput("distill", "bf16")
        check.sync_check()
        check.conversion_rtf()
        check.loss_curves()
    elapsed = time.perf_counter() - start
    print(f"gpu_check: {len(check.results)} checks in {elapsed:.0f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"elapsed_s": elapsed, "results": check.results}, indent=1))
    return 1 if any(str(r.get("result", "")).startswith("FAILED") for r in check.results) else 0


if __name__ == "__main__":
    sys.exit(main())
