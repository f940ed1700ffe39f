"""The GPU training path, on what a CPU can check: the mixed-precision choice, bf16 autocast through
the losses, the attention and both samplers, a short bf16 training, fp16 with the gradient scaler
(CUDA only), no host sync in a training step, deferred input checks, persistent-worker crops,
every process's generator state in checkpoints, run.sh's multi-machine launch, gpu_check --smoke."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

import models.base.trainer as trainer_module
import utils.precision
from bins.bench import gpu_check
from models.base.checkpoint import (latest_checkpoint, load_checkpoint, process_rng_state,
                                    rng_state, set_rng_state)
from models.base.dataset import collate
from models.svc.comosvc.consistency import consistency_distillation_loss, consistency_sample
from models.svc.comosvc.losses import masked_mse, masked_ssim_loss
from models.svc.comosvc.model import ComoSVC
from models.svc.comosvc.trainer import ComoSVCTrainer
from modules.encoder.condition_encoder import ConditionEncoder
from modules.transformer.relative_attention import RelativePositionMultiHeadAttention
from tests.comosvc_fixtures import random_batch, tiny_config as tiny_model_config
from tests.synthetic_processed import tiny_config
from utils.config import ConfigError
from utils.paths import PROJECT_ROOT
from utils.precision import resolve_mixed_precision

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)
RUN_SH = PROJECT_ROOT / "egs" / "svc" / "DiffComoSVC" / "run.sh"


@pytest.fixture()
def fresh_accelerate():
    """A mixed precision other than the process's first needs accelerate's state reset."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_auto_mixed_precision_per_device(monkeypatch):
    assert resolve_mixed_precision("auto") == ("bf16" if torch.cuda.is_available()
                                               and torch.cuda.is_bf16_supported() else
                                               "fp16" if torch.cuda.is_available() else "no")
    assert resolve_mixed_precision("bf16") == "bf16" and resolve_mixed_precision("no") == "no"
    monkeypatch.setattr(utils.precision.torch.cuda, "is_available", lambda: True)
    for bf16, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(utils.precision.torch.cuda, "is_bf16_supported", lambda b=bf16: b)
        assert resolve_mixed_precision("auto") == expected
    monkeypatch.setattr(utils.precision.torch.cuda, "is_available", lambda: False)
    assert resolve_mixed_precision("auto") == "no"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_mixed_precision("fp16")


def test_bf16_autocast_through_losses_attention_and_samplers():
    cfg = tiny_model_config()
    torch.manual_seed(0)
    model = ComoSVC(cfg).eval()
    model.set_energy_range(-3.0, 1.0)
    batch = random_batch(cfg, [30, 22])
    mask = batch["mask"]

    def run(fn, seed=0):
        torch.manual_seed(seed)
        return fn()

    # Losses: computed in float32 inside autocast, close to the float32 values.
    fp32 = run(lambda: model.loss(batch))
    dtypes = []
    model.decoder.output.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    with BF16:
        bf16 = run(lambda: model.loss(batch))
        mu = model.encode(batch)
    assert dtypes == [torch.bfloat16]  # autocast is really on
    for k in fp32.keys() - {"predicted"}:   # "predicted": the mels for the content loss
        assert bf16[k].dtype == torch.float32, k
        assert bf16[k].item() == pytest.approx(fp32[k].item(), rel=0.05), k
    a, b = mu.to(torch.bfloat16), batch["mel"].to(torch.bfloat16)
    with BF16:
        assert masked_mse(a, b, mask).dtype == masked_ssim_loss(a, b, mask).dtype == torch.float32
    assert masked_ssim_loss(a, b, mask).item() == pytest.approx(
        masked_ssim_loss(a.float(), b.float(), mask).item(), abs=1e-6)

    # Attention: float32 softmax, bf16 output close to the float32 one.
    attn = RelativePositionMultiHeadAttention(16, 2, 4).eval()
    x = torch.randn(2, 30, 16, generator=torch.Generator().manual_seed(1))
    with BF16:
        y = attn(x, mask)
    assert y.dtype == torch.bfloat16
    real = mask[..., None].expand_as(y)
    torch.testing.assert_close(y.float()[real], attn(x, mask)[real], atol=0.05, rtol=0.05)

    # Consistency loss and both samplers: finite, float32 trajectories, near the float32 results.
    dec = model.decoder
    with torch.no_grad():
        c32 = run(lambda: consistency_distillation_loss(model.edm, dec, dec, dec, batch["mel"],
                                                        mu.float(), mask, 8))
        with BF16:
            c16 = run(lambda: consistency_distillation_loss(model.edm, dec, dec, dec,
                                                            batch["mel"], mu, mask, 8))
        assert c16.dtype == torch.float32 and c16.item() == pytest.approx(c32.item(), rel=0.1)
        for sample in (lambda m: model.edm.sample(dec, m, mask, 4, "euler"),
                       lambda m: model.edm.sample(dec, m, mask, 4, "heun"),
                       lambda m: consistency_sample(model.edm, dec, m, mask, 2)):
            ref = run(lambda: sample(mu.float()))
            with BF16:
                out = run(lambda: sample(mu))
            assert out.dtype == torch.float32 and torch.isfinite(out).all()
            assert (out - ref).abs().max().item() < 0.05 * ref.abs().max().item()


def _losses(trainer) -> list[float]:
    logged = []
    log_train = trainer._log_train

    def logging(means, grad_norms):
        values = log_train(means, grad_norms)
        logged.append(values["loss"])
        return values

    trainer._log_train = logging
    trainer.train()
    return logged


def test_short_bf16_training_loss_falls(tmp_path, fresh_accelerate):
    cfg = tiny_config(tmp_path, overrides=["train.mixed_precision=bf16", "train.max_steps=16",
                                           "train.adamw.lr=3e-3", "train.save_every_steps=1000"])
    trainer = ComoSVCTrainer(cfg, "bf16")
    assert trainer.acc.mixed_precision == "bf16" and trainer.acc.scaler is None
    losses = _losses(trainer)
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with the gradient scaler needs CUDA")
def test_fp16_training_with_the_gradient_scaler(tmp_path, fresh_accelerate):
    cfg = tiny_config(tmp_path, overrides=["train.mixed_precision=fp16", "train.max_steps=4"])
    trainer = ComoSVCTrainer(cfg, "fp16")
    assert trainer.acc.scaler is not None
    assert all(np.isfinite(_losses(trainer)))
    assert "scaler" in load_checkpoint(latest_checkpoint(trainer.exp_dir))["training"]


def test_a_training_step_makes_no_host_sync(tmp_path, monkeypatch):
    """Tensor-to-host conversions called from Cantor's model and trainer code happen only at
    logged steps (the trainer's log syncs; the steps between make none)."""
    trainer = ComoSVCTrainer(tiny_config(tmp_path, overrides=[
        "train.max_steps=6", "train.log_every_steps=3", "train.save_every_steps=1000"]), "sync")
    watched = tuple(str(PROJECT_ROOT / d) for d in ("modules", "models"))
    calls: list[int] = []
    active = [True]

    def guard(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if active[0] and caller.startswith(watched) and not caller.endswith("dataset.py"):
                calls.append(trainer.step)
            return original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy"):
        guard(name)
    save = trainer.save
    trainer.save = lambda: (active.__setitem__(0, False), save())
    trainer.train()
    assert calls and set(calls) <= {3, 6}  # the log steps only (3 and 6 of 6)


def test_condition_encoder_checks_singers_later_when_deferred():
    cfg = tiny_model_config()
    enc = ConditionEncoder(cfg, 8)
    enc.set_energy_range(-3.0, 1.0)
    batch = random_batch(cfg, [5, 4])
    batch["singer"] = torch.tensor([1, 7])  # table size 4
    with pytest.raises(ValueError, match="singer id 7 outside the embedding table"):
        enc(batch)
    enc.defer_checks = True
    out = enc(batch)  # no error yet: clamped to the table's last row
    assert torch.equal(out[1], enc(dict(batch, singer=torch.tensor([1, 3])))[1])
    with pytest.raises(ValueError, match="singer id 7 outside the embedding table"):
        enc.raise_deferred_errors()
    enc.raise_deferred_errors()  # cleared
    enc(dict(batch, singer=torch.tensor([-2, 0])))
    enc(dict(batch, singer=torch.tensor([0, 1])))  # a later good batch keeps the bad id
    with pytest.raises(ValueError, match="singer id -2 outside"):
        enc.raise_deferred_errors()

    fresh = ConditionEncoder(cfg, 8)
    with pytest.raises(RuntimeError, match="log-energy range is not set"):
        fresh.energy_bucket(torch.ones(1, 3))
    fresh.load_state_dict(enc.state_dict())  # the range comes with the weights
    assert torch.equal(fresh.energy_bucket(torch.ones(1, 3)), enc.energy_bucket(torch.ones(1, 3)))
    fresh.load_state_dict(ConditionEncoder(cfg, 8).state_dict())
    with pytest.raises(RuntimeError, match="log-energy range is not set"):
        fresh.energy_bucket(torch.ones(1, 3))


def persistent_worker_crops(root: str) -> None:
    """The trainer's loader, persistent workers from a fork server, crops for each epoch as the
    dataset itself does. Run in its own interpreter (below)."""
    cfg = tiny_config(Path(root), frames=[80, 90, 70, 85, 60, 75],
                      overrides=["train.dataloader_workers=1"])
    trainer = ComoSVCTrainer(cfg, "crops")
    data, sampler, loader = trainer.train_set, trainer.sampler, trainer.train_loader
    assert loader.persistent_workers and loader.multiprocessing_context.get_start_method() == "forkserver"
    seen = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen[epoch] = [b["mel"] for b in loader]
        data.set_epoch(epoch)
        direct = [collate([data[i] for i in batch])["mel"] for batch in sampler]
        assert all(torch.equal(a, b) for a, b in zip(seen[epoch], direct))
    assert not all(torch.equal(a, b) for a, b in zip(seen[0], seen[1]))  # the crops moved


def test_persistent_workers_crop_for_the_current_epoch(tmp_path):
    # Not in the pytest process: iterating a multi-worker DataLoader installs torch's SIGCHLD
    # handler for good, and once OpenVINO has run bf16 (AMX) on this thread, the kernel kills the
    # process with SIGSEGV (SI_KERNEL) at the next child's exit (seen on an AMX Xeon; see README).
    code = f"from tests.test_gpu_path import persistent_worker_crops; persistent_worker_crops({str(tmp_path)!r})"
    run = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]


def test_every_process_generator_state_is_restored(tmp_path, monkeypatch):
    def draws():
        return random.random(), float(np.random.rand()), torch.rand(3)

    states, expected = [], []
    for seed in (11, 22):  # two processes' streams
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        states.append(rng_state(torch.device("cpu")))
        expected.append(draws())
    path = tmp_path / "rng.pt"
    torch.save({"rng": states}, path)
    loaded = torch.load(path, weights_only=True)["rng"]
    for index in (1, 0):
        set_rng_state(process_rng_state(loaded, index, 2))
        a, b, c = draws()
        assert (a, b) == expected[index][:2] and torch.equal(c, expected[index][2])
    assert process_rng_state(loaded, 0, 3) is None
    assert process_rng_state(states[0], 0, 1) is states[0]  # single-dict checkpoints

    # The trainer saves the gathered list and re-seeds when the process count differs.
    monkeypatch.setattr(trainer_module, "gather_object", lambda objs: objs + [states[1]])
    cfg = tiny_config(tmp_path, overrides=["train.max_steps=2"])
    ComoSVCTrainer(cfg, "two").train()
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "logs" / "two"))
    assert len(ckpt["training"]["rng"]) == 2
    assert torch.equal(ckpt["training"]["rng"][1]["torch"], states[1]["torch"])
    resumed = ComoSVCTrainer(tiny_config(tmp_path, overrides=["train.max_steps=3"]), "two",
                             resume=True)
    assert resumed._rng is None and resumed.step == 2


def test_fp16_without_cuda_is_a_config_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        ComoSVCTrainer(tiny_config(tmp_path, overrides=["train.mixed_precision=fp16"]), "x")


def test_run_sh_passes_multi_machine_options_to_accelerate(tmp_path):
    stub = tmp_path / "bin" / "python"  # run.sh execs `python bins/launch.py ACCELERATE_ARGS ...`
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}

    def run(*args):
        return subprocess.run(["bash", str(RUN_SH), "--stage", "2", "--name", "x", *args],
                              capture_output=True, text=True, env=env)

    out = run("--gpu", "0,1", "--num_machines", "2", "--machine_rank", "1",
              "--main_process_ip", "10.0.0.1", "--main_process_port", "29600")
    assert out.returncode == 0, out.stderr
    args = out.stdout.split()
    for flag, value in (("--num_processes", "4"), ("--num_machines", "2"), ("--machine_rank", "1"),
                        ("--main_process_ip", "10.0.0.1"), ("--main_process_port", "29600")):
        assert args[args.index(flag) + 1] == value, flag
    assert "--multi_gpu" in args and args[args.index("bins/svc/train.py") + 1] == "--config"
    config = tmp_path / "acc.yaml"
    config.write_text("num_machines: 2\n")
    out = run("--accelerate_config", str(config))
    assert out.stdout.split()[:3] == ["bins/launch.py", "--config_file", str(config)]
    assert "needs --main_process_ip" in run("--num_machines", "2").stderr


def test_gpu_check_smoke(tmp_path, fresh_accelerate, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--smoke", "--out", str(out)]) == 0
    results = {r["check"]: r for r in json.loads(out.read_text())["results"]}
    for mode, precision in (("teacher", "bf16"), ("teacher", "no"), ("distill", "bf16")):
        run = [r for r in json.loads(out.read_text())["results"]
               if r["check"] == f"{mode} training" and r["mixed_precision"] == precision]
        assert run and run[0]["steps_per_s"] > 0
    rtf = results["conversion real-time factor (fp32)"]
    # measured, not compared: which is faster is the benchmark's to report, not a timed test's
    assert rtf["student_acoustic_rtf"] > 0 and rtf["teacher_acoustic_rtf"] > 0
    assert results["bf16 vs fp32 loss over 12 steps"]["result"] == "ok"
    assert "teacher training" in capsys.readouterr().out


@pytest.mark.skipif(os.environ.get("CANTOR_SLOW") != "1", reason="two training processes: set CANTOR_SLOW=1")
def test_two_processes_resume_to_the_uninterrupted_losses(tmp_path):
    """Two CPU processes (torch.distributed.run, gloo): a run stopped at step 2 and resumed gives
    steps 3-4 the losses of an uninterrupted run, which needs each process's own generators."""
    from tests.test_trainer import events
    tiny_config(tmp_path, frames=[40, 25, 60, 33, 50, 45, 30, 38, 36, 44])
    # ACCELERATE_USE_CPU: accelerate treats torchrun's CPU processes as one group (gloo).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT),
           "ACCELERATE_USE_CPU": "true"}

    def train(name, steps, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(29400 + steps + len(extra)), str(PROJECT_ROOT / "bins/svc/train.py"),
               "--config", str(tmp_path / "config.json"), "--exp_name", name, *extra,
               "--set", f"train.max_steps={steps}", "--set", "train.save_every_steps=2",
               "--set", "train.scheduler.type=exponential", "--set", "train.scheduler.gamma=0.5"]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]

    train("a", 4)
    train("b", 2)
    rngs = load_checkpoint(latest_checkpoint(tmp_path / "logs" / "b"))["training"]["rng"]
    assert len(rngs) == 2 and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    train("b", 4, "--resume")
    a, b = (events(tmp_path / "logs" / n)[0]["train/loss"] for n in ("a", "b"))
    assert [b[s] for s in (3, 4)] == [a[s] for s in (3, 4)]
    assert len(set(a.values())) == 4
