"""The DiffComoSVC teacher (models/svc/comosvc/model.py) and its modules (condition encoder,
relative-position Transformer, BiDilConv denoiser): shapes, masking, errors, training on real demo
features."""
from __future__ import annotations

import math

import pytest
import torch

from models.svc.comosvc.distiller import build_model
from models.svc.comosvc.model import ComoSVC, count_parameters
from modules.encoder.condition_encoder import quantise_f0
from tests.comosvc_fixtures import (overfitted_teacher, random_batch, real_clip, repeat,
                                    tiny_config, train)
from utils.config import ConfigError, load_config
from utils.paths import PROJECT_ROOT

WITH_CONTENT = ["preprocess.content_features=['whisper', 'contentvec']",
                "model.condition_encoder.whisper_dim=12",
                "model.condition_encoder.contentvec_dim=8"]


def _tiny_model(*overrides: str, seed: int = 0) -> ComoSVC:
    torch.manual_seed(seed)
    model = ComoSVC(tiny_config(*overrides))
    model.set_energy_range(-4.0, 1.0)
    return model


def _one(batch: dict[str, torch.Tensor], i: int, length: int) -> dict[str, torch.Tensor]:
    """Utterance i of a padded batch, cut to its length, as a batch of one."""
    return {k: (v[i:i + 1, :, :length] if k == "mel" else v[i:i + 1, :length] if v.dim() > 1
                else v[i:i + 1]) for k, v in batch.items()}


def test_full_size_parameter_count_matches_amphion():
    cfg = load_config(PROJECT_ROOT / "config/comosvc.json")
    model = build_model(cfg)
    n = count_parameters(model)
    print(f"full-size DiffComoSVC teacher: {n} parameters "
          f"(condition encoder {count_parameters(model.condition_encoder)}, encoder "
          f"{count_parameters(model.encoder) + count_parameters(model.mu_proj)}, decoder "
          f"{count_parameters(model.decoder)})")
    assert abs(n - 37.5e6) / 37.5e6 < 0.01  # Amphion's teacher: about 37.5 M
    assert count_parameters(model, trainable_only=True) == n


def test_shapes_and_padding_do_not_change_real_frames():
    model = _tiny_model(*WITH_CONTENT).eval()
    batch = random_batch(model.cfg, [20, 13])
    n_mel = model.cfg.preprocess.n_mel
    with torch.no_grad():
        mu = model.encode(batch)
        alone = model.encode(_one(batch, 1, 13))
    assert mu.shape == (2, n_mel, 20)
    assert float(mu[1, :, 13:].abs().max()) == 0.0
    torch.testing.assert_close(mu[1:, :, :13], alone, atol=1e-5, rtol=1e-5)
    # The denoiser is padding-invariant too.
    torch.manual_seed(1)
    x = torch.randn(2, n_mel, 20)
    c_noise = torch.tensor([0.3, -0.7])
    with torch.no_grad():
        f = model.decoder(x, c_noise, mu, batch["mask"])
        f_alone = model.decoder(x[1:, :, :13], c_noise[1:], alone, batch["mask"][1:, :13])
    torch.testing.assert_close(f[1:, :, :13], f_alone, atol=1e-5, rtol=1e-5)
    assert float(f[1, :, 13:].abs().max()) == 0.0

    losses = model.loss(batch)
    assert set(losses) == {"loss", "edm_loss", "prior_loss", "ssim_loss", "predicted"}
    assert set(losses["predicted"]) == {"mu", "denoised"}
    assert losses["predicted"]["mu"].shape == losses["predicted"]["denoised"].shape == (2, n_mel, 20)
    w = model.cfg.train
    expected = (w.edm_loss_weight * losses["edm_loss"] + w.prior_loss_weight * losses["prior_loss"]
                + w.ssim_loss_weight * losses["ssim_loss"])
    torch.testing.assert_close(losses["loss"], expected)

    out = model.sample(batch, steps=3, generator=torch.Generator().manual_seed(0))
    again = model.sample(batch, steps=3, generator=torch.Generator().manual_seed(0))
    other = model.sample(batch, steps=3, generator=torch.Generator().manual_seed(1))
    assert out["mel"].shape == out["mu"].shape == (2, n_mel, 20)
    assert float(out["mel"][1, :, 13:].abs().max()) == 0.0
    assert torch.equal(out["mel"], again["mel"]) and not torch.equal(out["mel"], other["mel"])
    student = model.sample(batch, student=True, generator=torch.Generator().manual_seed(0))
    assert student["mel"].shape == (2, n_mel, 20)
    for as_student in (False, True):  # 0 steps: the coarse mel itself, the control
        coarse = model.sample(batch, steps=0, student=as_student)
        assert torch.equal(coarse["mel"], out["mu"]) and torch.equal(coarse["mu"], out["mu"])


def test_condition_encoder_bins():
    f0 = torch.tensor([[50.0, 1100.0, 2000.0, 30.0, 0.0, 300.0]])
    uv = torch.tensor([[False, False, False, False, True, True]])
    # Mel-scale midpoint of 50..1100 Hz: 700 (exp((m(50) + m(1100)) / 2 / 1127) - 1) = 419.3 Hz.
    mid = 700.0 * (math.exp((1127 * math.log1p(50 / 700) + 1127 * math.log1p(1100 / 700)) / 2
                            / 1127) - 1)
    assert quantise_f0(f0, uv, 256, 50.0, 1100.0).tolist() == [[1, 255, 255, 1, 0, 0]]
    assert quantise_f0(torch.tensor([[mid]]), torch.tensor([[False]]), 256, 50.0,
                       1100.0).tolist() == [[128]]
    enc = _tiny_model().condition_encoder
    enc.set_energy_range(0.0, 1.0)
    energy = torch.exp(torch.tensor([[-1.0, 0.0, 0.25, 1.0, 2.0]]))
    # 255 boundaries k / 254 over [0, 1]: ln(e) = 0.25 lies between k = 63 and 64.
    assert enc.energy_bucket(energy).tolist() == [[0, 0, 64, 254, 255]]


def test_condition_encoder_errors():
    model = ComoSVC(tiny_config(*WITH_CONTENT))
    batch = random_batch(model.cfg, [6])
    with pytest.raises(RuntimeError, match="set_energy_range"):
        model.encode(batch)
    with pytest.raises(ValueError, match="min < max"):
        model.set_energy_range(1.0, 0.0)
    model.set_energy_range(-4.0, 1.0)
    bad = dict(batch, singer=torch.tensor([4]))
    with pytest.raises(ValueError, match="singer_table_size"):
        model.encode(bad)
    bad = dict(batch, whisper=torch.zeros(1, 6, 5))
    with pytest.raises(ValueError, match="whisper_dim"):
        model.encode(bad)
    with pytest.raises(ValueError, match="unknown content feature 'hubert'"):
        ComoSVC(tiny_config("preprocess.content_features=['hubert']"))
    # The energy range travels in the state dict.
    fresh = ComoSVC(tiny_config(*WITH_CONTENT))
    fresh.load_state_dict(model.state_dict())
    assert float(fresh.condition_encoder.log_energy_min) == -4.0
    assert torch.equal(fresh.encode(batch), fresh.encode(batch))


@pytest.mark.parametrize("override, key", [
    ("model.comosvc.n_heads=5", "model.comosvc.n_heads"),
    ("model.comosvc.kernel_size=4", "model.comosvc.kernel_size"),
    ("model.comosvc.sigma_min=90", "model.comosvc.sigma_min"),
    ("model.comosvc.ema_decay=1.0", "model.comosvc.ema_decay"),
    ("model.comosvc.n_timesteps=1", "model.comosvc.n_timesteps"),
    ("inference.comosvc.inference_steps=-1", "inference.comosvc.inference_steps"),
])
def test_bad_model_config_values_are_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ComoSVC(tiny_config(override))


def test_loss_decreases_on_a_real_batch(demo_data):
    batch, energy_range = real_clip(demo_data)
    torch.manual_seed(0)
    model = ComoSVC(tiny_config())
    model.set_energy_range(*energy_range)
    batch = repeat(batch, 4)

    def fixed_noise_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return model.loss(batch)["loss"].item()

    before = fixed_noise_loss()
    train(model, batch, steps=30, lr=3e-3)
    after = fixed_noise_loss()
    assert after < 0.7 * before, (before, after)


def test_overfitting_one_utterance_brings_samples_to_the_target(demo_data):
    batch, _ = real_clip(demo_data)
    y = batch["mel"]
    baseline = float((y - y.mean(dim=-1, keepdim=True)).abs().mean())  # per-bin constant mel
    trained = ComoSVC(tiny_config())
    trained.load_state_dict(overfitted_teacher(demo_data))
    untrained = ComoSVC(tiny_config())
    untrained.load_state_dict({k: v for k, v in overfitted_teacher(demo_data).items()
                               if k.startswith("condition_encoder.log_energy")}, strict=False)

    def errors(model: ComoSVC, steps: int) -> tuple[float, float]:
        model.eval()
        out = model.sample(batch, steps=steps, generator=torch.Generator().manual_seed(7))
        return float((out["mel"] - y).abs().mean()), float((out["mu"] - y).abs().mean())

    # The trained denoiser D removes most of the noise of y + sigma (eps + mu) at every level.
    trained.eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        mu_hat = trained.encode(batch)
        for sigma in (1.0, 5.0, 80.0):
            x = trained.edm.add_noise(y, sigma, mu_hat, torch.randn(y.shape, generator=g))
            d = trained.edm.denoise(trained.decoder, x, sigma, mu_hat, batch["mask"])
            assert float((d - y).abs().mean()) < 0.4 * float((x - y).abs().mean()), sigma
    mel40, mu = errors(trained, 40)
    mel1, _ = errors(trained, 1)
    untrained40, _ = errors(untrained, 40)
    print(f"L1 to the target: mu {mu:.3f}, 1-step {mel1:.3f}, 40-step {mel40:.3f}, untrained "
          f"40-step {untrained40:.3f}, per-bin constant {baseline:.3f}")
    assert mu < 0.3 * baseline
    assert mel1 < 0.5 * baseline
    assert mel40 < 0.8 * untrained40
