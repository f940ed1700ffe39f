"""Stage 2 trainer: outputs (checkpoints, args.json, TensorBoard), keep_last, exact resume, fine-tuning,
distillation with its export, and clear errors. Tiny ComoSVC on synthetic stage 1 output."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models.vocoders
from cantor.cli import main as cantor_main
from models.base.checkpoint import (CheckpointError, conversion_checkpoint, latest_checkpoint,
                                    latest_export, list_checkpoints, load_checkpoint,
                                    save_checkpoint)
from models.base.dataset import collate
from models.base.plot import SEPARATOR_ROWS, mel_image
from models.base.scheduler import lr_factor
from models.svc.comosvc.model import ComoSVC
from models.svc.comosvc.trainer import ComoSVCTrainer
from utils.config import ConfigError, config_from_dict, config_to_dict
from utils.io import load_json
from tests.kill_fixture import kill_after_checkpoint
from tests.synthetic_processed import tiny_config

# 8 training utterances (4 batches of 2 per epoch) + 2 test utterances.
FRAMES = [40, 25, 60, 33, 50, 45, 30, 38, 36, 44]
HOP = 256


class StubVocoder:
    """Stands in for models.vocoders.load_vocoder's result (the real ones are tested elsewhere)."""
    sample_rate = 22050

    def __call__(self, mel):
        return (mel.mean(1, keepdim=True) * 1e-2).repeat_interleave(HOP, -1)[:, 0]


@pytest.fixture(autouse=True, scope="module")
def stub_vocoder():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models.vocoders, "load_vocoder", lambda cfg, device: StubVocoder())
        yield


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("trainer")


def config(root, *overrides):
    return tiny_config(root, FRAMES, list(overrides))


def events(exp_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(exp_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                         "audio": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    return scalars, tags["images"], tags["audio"]


# Teacher runs: a checkpoint every step, validation every 2 steps, lr halved every step.
RUN = ("train.save_every_steps=1", "train.valid_every_steps=2", "train.scheduler.type=exponential",
       "train.scheduler.gamma=0.5")


@pytest.fixture(scope="module")
def teacher(root):
    """An uninterrupted 8-step teacher run "a" (two epochs of 4 batches)."""
    cfg = config(root, "train.max_steps=8", *RUN)
    trainer = ComoSVCTrainer(cfg, "a")
    trainer.train()
    return cfg, trainer


def test_training_writes_checkpoints_args_and_tensorboard(teacher):
    cfg, trainer = teacher
    exp = trainer.exp_dir
    assert [p.name for p in list_checkpoints(exp / "checkpoint")] == ["step-00000007.pt",
                                                                     "step-00000008.pt"]
    assert not (exp / "export").exists()
    assert load_json(exp / "args.json") == config_to_dict(cfg)
    scalars, images, audio = events(exp)
    for name in ("loss", "edm_loss", "prior_loss", "ssim_loss", "grad_norm_encoder",
                 "grad_norm_decoder", "lr"):
        assert sorted(scalars[f"train/{name}"]) == list(range(1, 9))
    for step, lr in scalars["train/lr"].items():
        assert lr == pytest.approx(cfg.train.adamw.lr * 0.5 ** step)
    assert sorted(scalars["valid/loss"]) == [2, 4, 6, 8]
    assert "valid/mel_0/target_mu_sampled" in images
    assert {"valid/target_0", "valid/sampled_0"} <= set(audio)
    ckpt = load_checkpoint(latest_checkpoint(exp))
    assert ckpt["student"] is False and ckpt["step"] == 8 and ckpt["epoch"] == 1
    assert ckpt["singers"] == {"synth_alto": 0, "synth_tenor": 1}
    assert set(ckpt["statistics"]) == {"synth"}
    assert ckpt["training"]["batches_done"] == 4  # the last batch of epoch 1
    fresh = ComoSVC(config_from_dict(ckpt["config"]))
    fresh.load_state_dict(ckpt["model"])
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(root, teacher):
    _, a = teacher
    ComoSVCTrainer(config(root, "train.max_steps=3", *RUN), "b").train()
    resumed = ComoSVCTrainer(config(root, "train.max_steps=8", *RUN), "b", resume=True)
    assert (resumed.step, resumed.epoch, resumed.batches_done) == (3, 0, 3)  # mid-epoch
    resumed.train()
    a_loss, b_loss = events(a.exp_dir)[0]["train/loss"], events(resumed.exp_dir)[0]["train/loss"]
    assert [b_loss[s] for s in range(4, 9)] == [a_loss[s] for s in range(4, 9)]
    assert len(set(a_loss.values())) == 8  # the losses do change from step to step
    for k, v in a.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_losses(root, teacher):
    """A `cantor train-stage` process (validation off: it must not change training either) is killed
    once its step-2 checkpoint exists; resuming from its newest checkpoint k continues with
    run a's losses for steps k+1..8."""
    _, a = teacher
    path = root / "config.json"
    config(root)  # (re)writes root/config.json
    exp = root / "logs" / "killed"
    k = kill_after_checkpoint(path, exp, [*RUN, "train.max_steps=1000", "train.valid_every_steps=1000"])
    assert 2 <= k < 8
    resumed = ComoSVCTrainer(config(root, "train.max_steps=8", *RUN), "killed", resume=True)
    resumed.train()
    a_loss, b_loss = events(a.exp_dir)[0]["train/loss"], events(exp)[0]["train/loss"]
    assert [b_loss[s] for s in range(k + 1, 9)] == [a_loss[s] for s in range(k + 1, 9)]


def test_finetune_loads_weights_only(root, teacher):
    _, a = teacher
    cfg = config(root, "train.max_steps=1", "train.gradient_accumulation_steps=3")
    ft = ComoSVCTrainer(cfg, "ft", resume_from=a.exp_dir, resume_type="finetune")
    assert ft.step == 0 and len(ft.optimizers["model"].state) == 0
    assert ft.schedulers["model"].get_last_lr()[0] == cfg.train.adamw.lr
    for k, v in a.model.state_dict().items():
        assert torch.equal(ft.model.state_dict()[k], v), k
    ft.train()
    ckpt = load_checkpoint(latest_checkpoint(ft.exp_dir))
    # one optimizer step made of 3 micro-batches
    assert ckpt["step"] == 1 and ckpt["training"]["batches_done"] == 3
    assert {int(s["step"]) for s in ckpt["training"]["optimizer"]["model"]["state"].values()} == {1}


def test_distillation_trains_student_and_exports_a_comosvc(root, teacher):
    _, a = teacher
    cfg = config(root, "model.comosvc.distill=true", f"model.teacher_model_path={a.exp_dir}",
                 "train.max_steps=2", "train.save_every_steps=1", "train.valid_every_steps=2")
    trainer = ComoSVCTrainer(cfg, "distil")
    teacher_decoder = {k: v.clone() for k, v in trainer.model.target.state_dict().items()}
    trainer.train()
    exp = trainer.exp_dir
    assert conversion_checkpoint(exp) == latest_export(exp) == exp / "export" / "step-00000002.pt"
    export = load_checkpoint(latest_export(exp))
    assert export["student"] is True and "training" not in export and export["step"] == 2
    assert "consistency_loss" in {t.split("/")[1] for t in events(exp)[0]}
    student = ComoSVC(config_from_dict(export["config"]))
    student.load_state_dict(export["model"])
    target = trainer.model.target.state_dict()
    assert any(not torch.equal(target[k], teacher_decoder[k]) for k in target)  # EMA moved
    for k, v in target.items():
        assert torch.equal(student.decoder.state_dict()[k], v)
    for k, v in a.model.encoder.state_dict().items():  # frozen teacher parts unchanged
        assert torch.equal(student.encoder.state_dict()[k], v)
    batch = collate([trainer.valid_set[0]])
    student.eval()
    trainer.model.eval()
    one = student.sample(batch, steps=1, student=True, generator=torch.Generator().manual_seed(0))
    ref = trainer.model.sample(batch, steps=1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(one["mel"], ref["mel"])
    # a resumed distillation needs no teacher path: its checkpoint holds the frozen teacher
    more = config(root, "model.comosvc.distill=true", "train.max_steps=3")
    resumed = ComoSVCTrainer(more, "distil", resume=True)
    assert resumed.step == 2
    resumed.train()
    assert load_checkpoint(latest_checkpoint(exp))["student"] is True


def test_bad_settings_and_checkpoints_give_clear_errors(root, teacher):
    _, a = teacher
    with pytest.raises(ConfigError, match="train.batch_size = 0 must be >= 1"):
        ComoSVCTrainer(config(root, "train.batch_size=0"), "x")
    with pytest.raises(ConfigError, match="train.max_epochs = 0: use -1"):
        ComoSVCTrainer(config(root, "train.max_epochs=0"), "x")
    distil = ("model.comosvc.distill=true",)
    with pytest.raises(ConfigError, match="model.teacher_model_path is empty"):
        ComoSVCTrainer(config(root, *distil), "x")
    with pytest.raises(CheckpointError, match=r"teacher checkpoint \(model.teacher_model_path\) "
                                              r"not found: .*nowhere"):
        ComoSVCTrainer(config(root, *distil, f"model.teacher_model_path={root}/nowhere"), "x")
    (root / "empty_exp").mkdir()
    with pytest.raises(CheckpointError, match="no teacher checkpoint .* in .*empty_exp"):
        ComoSVCTrainer(config(root, *distil, f"model.teacher_model_path={root}/empty_exp"), "x")
    export = latest_export(root / "logs" / "distil")
    with pytest.raises(CheckpointError, match="is a distilled student"):
        ComoSVCTrainer(config(root, *distil, f"model.teacher_model_path={export}"), "x")
    with pytest.raises(CheckpointError, match=r"--resume: no checkpoint in .*never_ran"):
        ComoSVCTrainer(config(root), "never_ran", resume=True)
    with pytest.raises(CheckpointError, match="is an export"):
        ComoSVCTrainer(config(root, *distil), "x", resume_from=export)
    with pytest.raises(CheckpointError, match="holds a teacher, but model.comosvc.distill is true"):
        ComoSVCTrainer(config(root, *distil), "x", resume_from=a.exp_dir)
    with pytest.raises(CheckpointError, match="finetune needs --resume_from_ckpt_path"):
        ComoSVCTrainer(config(root), "x", resume_type="finetune")
    with pytest.raises(CheckpointError, match="do not fit the model built from this config"):
        ComoSVCTrainer(config(root, "model.comosvc.residual_channels=8"), "x", resume_from=a.exp_dir)
    torch.save({"weight": torch.zeros(2)}, root / "plain.pt")
    with pytest.raises(CheckpointError, match="not a Cantor checkpoint"):
        load_checkpoint(root / "plain.pt")
    torch.save({"format": StubVocoder()}, root / "pickled.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(root / "pickled.pt")


def test_checkpoint_discovery_ignores_temporaries_and_prunes(tmp_path):
    folder = tmp_path / "checkpoint"
    for step in (9, 10, 2):
        save_checkpoint(folder, step, {"step": step}, keep_last=0)
    (folder / ".step-00000011.pt.abc.tmp").write_bytes(b"half a file")
    assert latest_checkpoint(tmp_path) == folder / "step-00000010.pt"
    save_checkpoint(folder, 12, {"step": 12}, keep_last=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000010.pt", "step-00000012.pt"]


def test_learning_rate_schedules(root):
    cfg = config(root, "train.max_steps=100", "train.scheduler.type=cosine",
                 "train.scheduler.min_lr=1e-5", "train.scheduler.warmup_steps=10")
    lr = cfg.train.adamw.lr
    assert lr_factor(0, cfg.train) == pytest.approx(0.1)
    assert lr_factor(9, cfg.train) == pytest.approx(1.0)
    assert lr * lr_factor(100, cfg.train) == pytest.approx(1e-5)
    assert lr * lr_factor(55, cfg.train) == pytest.approx((lr + 1e-5) / 2)
    cfg = config(root, "train.scheduler.type=exponential", "train.scheduler.gamma=0.9")
    assert lr_factor(3, cfg.train) == pytest.approx(0.9 ** 3)
    assert lr_factor(3, config(root).train) == 1.0
    assert math.isclose(lr_factor(0, cfg.train), 1.0)


def test_cantor_train_stage_command(root, capsys):
    path = root / "config.json"
    config(root)  # (re)writes root/config.json
    assert cantor_main(["train-stage", "--config", str(path), "--exp_name", "cli",
                        "--set", "train.max_steps=1"]) == 0
    assert latest_checkpoint(root / "logs" / "cli").name == "step-00000001.pt"
    assert cantor_main(["train-stage", "--config", str(path), "--exp_name", "cli2",
                        "--set", "model.comosvc.distill=true"]) == 2
    assert "teacher_model_path is empty" in capsys.readouterr().err


def test_mel_image_stacks_panels_on_a_shared_scale():
    from matplotlib import colormaps
    target = np.zeros((4, 5))
    target[0] = 2.0  # lowest bin loudest: drawn at the bottom of its panel
    image = mel_image([target, np.ones((4, 5))])
    assert image.shape == (3, 4 + SEPARATOR_ROWS + 4, 5) and image.dtype == np.uint8
    colour = lambda x: (np.asarray(colormaps["viridis"](x)[:3]) * 255).round()  # noqa: E731
    np.testing.assert_array_equal(image[:, 3, 0], colour(1.0))  # bin 0 of the first panel
    np.testing.assert_array_equal(image[:, 0, 0], colour(0.0))
    np.testing.assert_array_equal(image[:, 4, 0], [255, 255, 255])  # separator
    np.testing.assert_array_equal(image[:, -1, 0], colour(0.5))  # 1.0 on the 0..2 scale


def test_per_module_clipping_leaves_the_condition_encoder_unclipped(teacher):
    _, trainer = teacher
    model = trainer.model
    groups = model.clip_groups()
    for i, p in enumerate(model.trainable_parameters()):
        p.grad = torch.full_like(p, 0.1 * (i % 3 + 1))
    before = {name: torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                          for p in ps])) for name, ps in groups.items()}
    cond = [p.grad.clone() for p in model.condition_encoder.parameters()]
    norms = trainer._clip_gradients("model", 1.0)
    assert set(norms) == {"grad_norm_encoder", "grad_norm_decoder"}
    for name, ps in groups.items():
        assert float(norms[f"grad_norm_{name}"]) == pytest.approx(float(before[name]), rel=1e-5)
        assert float(before[name]) > 1.0  # each group is clipped to norm 1 on its own
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in ps]))
        assert float(after) == pytest.approx(1.0, rel=1e-4)
    for g, p in zip(cond, model.condition_encoder.parameters()):
        assert torch.equal(g, p.grad)
    model.zero_grad(set_to_none=True)


def test_plateau_schedule_steps_once_per_epoch_on_the_validation_loss(root):
    cfg = config(root, "train.max_steps=10", "train.scheduler.type=reducelronplateau",
                 "train.scheduler.patience=0", "train.scheduler.factor=0.5",
                 "train.scheduler.min_lr=0", "train.valid_every_steps=100",
                 "train.save_every_steps=100")
    trainer = ComoSVCTrainer(cfg, "plateau")
    trainer.train()
    # 4 batches per epoch, 10 steps: stepped after the two whole epochs (steps 4 and 8), on the
    # validation loss; the rate stays between them.
    assert trainer.schedulers["model"].last_epoch == 2
    assert math.isfinite(trainer.schedulers["model"].best)
    halvings = round(math.log2(cfg.train.adamw.lr / trainer.optimizers["model"].param_groups[0]["lr"]))
    assert halvings in (0, 1)  # the second epoch either improved or was cut once (patience 0)
