"""VitsSVC stage 2: two optimisers in the base trainer, checkpoints that hold both, a SIGKILLed run
resumed to bit-identical weights, the export converting through the registry."""
from __future__ import annotations


import pytest
import torch

from models.base.checkpoint import latest_checkpoint, load_checkpoint
from models.svc.registry import converter_class
from models.svc.vits.model import VitsSVC
from models.svc.vits.trainer import VitsTrainer
from utils.config import ConfigError, config_from_dict
from tests.kill_fixture import kill_after_checkpoint
from tests.synthetic_processed import tiny_vits_config

RUN = ("train.save_every_steps=1", "train.valid_every_steps=1000")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("vits_trainer")


@pytest.fixture(scope="module")
def run_a(root):
    trainer = VitsTrainer(tiny_vits_config(root, overrides=["train.max_steps=4", *RUN]), "a")
    trainer.train()
    return trainer


def test_checkpoint_holds_both_optimisers_and_the_generator(run_a):
    ckpt = load_checkpoint(latest_checkpoint(run_a.exp_dir))
    assert ckpt["step"] == 4
    assert set(ckpt["training"]["optimizer"]) == {"discriminator", "generator"}
    for part in ("discriminator", "generator"):
        steps = {int(s["step"]) for s in ckpt["training"]["optimizer"][part]["state"].values()}
        assert steps == {4}
    fresh = VitsSVC(config_from_dict(ckpt["config"]))
    fresh.load_state_dict(ckpt["model"])  # the export is the generator alone
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_a.exp_dir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/discriminator_loss", "train/generator_loss", "train/mel", "train/kl",
            "train/grad_norm_generator"} <= tags


def test_a_sigkilled_run_resumes_to_bit_identical_weights(root, run_a):
    tiny_vits_config(root)  # (re)writes root/vits_config.json
    exp = root / "logs" / "killed"
    k = kill_after_checkpoint(root / "vits_config.json", exp, [*RUN, "train.max_steps=1000"])
    assert 2 <= k < 4
    resumed = VitsTrainer(tiny_vits_config(root, overrides=["train.max_steps=4", *RUN]), "killed",
                          resume=True)
    resumed.train()
    a_state, b_state = run_a.model.state_dict(), resumed.model.state_dict()
    assert a_state.keys() == b_state.keys()
    for name, value in a_state.items():
        assert torch.equal(b_state[name], value), name


def test_trained_experiment_converts_through_the_registry(run_a):
    ckpt = load_checkpoint(latest_checkpoint(run_a.exp_dir))
    assert converter_class(ckpt["config"]["model_type"]).__name__ == "VitsConverter"


def test_validation_logs_losses_and_audio(root):
    cfg = tiny_vits_config(root, overrides=["train.max_steps=1", "train.valid_every_steps=1"])
    trainer = VitsTrainer(cfg, "valid")
    trainer.train()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(trainer.exp_dir / "tensorboard"), size_guidance={"audio": 0})
    acc.Reload()
    assert {"valid/mel", "valid/kl", "valid/loss"} <= set(acc.Tags()["scalars"])
    assert {"valid/target_0", "valid/converted_0"} <= set(acc.Tags()["audio"])
    assert "valid/mel_0/target_converted" in acc.Tags()["images"]


def test_vits_settings_are_checked(root):
    with pytest.raises(ConfigError, match="no distillation"):
        VitsTrainer(tiny_vits_config(root, overrides=["model.comosvc.distill=true"]), "x")
    with pytest.raises(ConfigError, match="preprocess.extract_audio"):
        tiny_vits_config(root, overrides=["preprocess.extract_audio=false"])
    with pytest.raises(ConfigError, match="multiply to 512"):
        tiny_vits_config(root, overrides=["model.vits.upsample_rates=[16, 32]"])
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        tiny_vits_config(root, overrides=["train.gradient_accumulation_steps=2"])
