"""Amphion's training objective as config choices (issue 14): the prior-loss and SSIM forms against
hand-computed numbers, the decoder's Kaiming-normal init and the ReduceLROnPlateau schedule."""
from __future__ import annotations

import math

import pytest
import torch

from models.base.scheduler import build_scheduler, is_per_epoch
from models.svc.comosvc.losses import _gaussian_blur, masked_ssim_loss, prior_loss
from modules.diffusion.bidilconv import BiDilConv
from tests.comosvc_fixtures import tiny_config


def _mask(b: int, t: int, real: int) -> torch.Tensor:
    m = torch.zeros(b, t, dtype=torch.bool)
    m[:, :real] = True
    return m


def test_prior_loss_forms_hand_values():
    # 4 bins, 2 real frames of error 0.5 (squared 0.25); the padded frame differs by 3 and is ignored.
    mel = torch.full((1, 4, 3), 0.5, dtype=torch.float64)
    mu = torch.zeros_like(mel)
    mu[..., 2] = 3.5
    mask = _mask(1, 3, 2)
    assert float(prior_loss(mu, mel, mask, "mse")) == pytest.approx(0.25, rel=1e-12)
    # Amphion: 0.5 * (0.25 + ln 2 pi) / n_mel = 0.5 * (0.25 + 1.8378770664) / 4.
    assert float(prior_loss(mu, mel, mask, "amphion")) == pytest.approx(0.2609846333, rel=1e-9)
    # Its gradient is 1 / (2 n_mel) of the MSE's.
    grads = []
    for form in ("mse", "amphion"):
        m = mu.clone().requires_grad_(True)
        prior_loss(m, mel, mask, form).backward()
        grads.append(m.grad)
    assert torch.allclose(grads[1], grads[0] / 8.0)
    with pytest.raises(ValueError, match="prior loss form"):
        prior_loss(mu, mel, mask, "l1")


@pytest.mark.parametrize("form, shift", [("amphion", 6.0), ("unit", None)])
def test_ssim_forms_on_constant_mels_match_the_closed_form(form, shift):
    # Constant images a, b after the form's map: with w = blur(ones) (zero padding), the blurred
    # means are a w, b w, the variances a^2 w (1 - w), b^2 w (1 - w), the covariance ab w (1 - w).
    n_mel, frames = 20, 30
    pred = torch.full((1, n_mel, frames), 0.5, dtype=torch.float64)
    target = torch.full_like(pred, -0.5)
    mask = torch.ones(1, frames, dtype=torch.bool)
    a, b = (0.5 + shift, -0.5 + shift) if shift else (0.75, 0.25)
    r = torch.arange(11, dtype=torch.float64) - 5
    window = torch.exp(-r ** 2 / (2 * 1.5 ** 2))
    w = _gaussian_blur(torch.ones(1, 1, n_mel, frames, dtype=torch.float64), window / window.sum())
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    v = w * (1 - w)
    ssim = ((2 * a * b * w ** 2 + c1) * (2 * a * b * v + c2)) / (
        ((a * a + b * b) * w ** 2 + c1) * ((a * a + b * b) * v + c2))
    expected = 1.0 - float(ssim.mean())
    assert float(masked_ssim_loss(pred, target, mask, form)) == pytest.approx(expected, rel=1e-9)
    # In the interior (w = 1) only the luminance term is left: Amphion's mel + 6 barely sees a
    # mean difference of 1 (6.5 vs 5.5: 1 - 71.5001 / 72.5001 = 0.0138), the [0, 1] form does
    # (0.75 vs 0.25: 1 - 0.3751 / 0.6251 = 0.3999).
    interior = 1.0 - float(ssim[..., 8:-8, 8:-8].mean())
    assert interior == pytest.approx(0.0137930 if shift else 0.3999360, rel=1e-5)


def test_ssim_ignores_padded_frames_and_rejects_unknown_forms():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 16, 40, generator=g) * 2 - 1
    target = torch.rand(2, 16, 40, generator=g) * 2 - 1
    mask = _mask(2, 40, 25)
    other = target.clone()
    other[..., 25:] = 5.0  # padding content must not matter
    for form in ("amphion", "unit"):
        assert float(masked_ssim_loss(pred, target, mask, form)) == pytest.approx(
            float(masked_ssim_loss(pred, other, mask, form)), rel=1e-6)
        assert float(masked_ssim_loss(target, target, mask, form)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="SSIM form"):
        masked_ssim_loss(pred, target, mask, "raw")


def test_decoder_kaiming_normal_init():
    torch.manual_seed(0)
    kaiming = BiDilConv(80, 192, 6, 4, init="kaiming_normal")
    default = BiDilConv(80, 192, 6, 4, init="default")
    for net in (kaiming, default):
        assert not net.output.weight.any() and not net.output.bias.any()
    # N(0, 2 / fan_in): a 3-tap dilated conv of 192 channels has fan_in 576; torch's default
    # (kaiming_uniform, a = sqrt(5)) has std 1 / sqrt(3 fan_in).
    for layer, fan_in in ((kaiming.blocks[0].dilated, 576), (kaiming.noise_embedding.mlp[2], 512)):
        assert float(layer.weight.detach().std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    assert float(default.blocks[0].dilated.weight.detach().std()) == pytest.approx(
        1 / math.sqrt(3 * 576), rel=0.03)
    with pytest.raises(ValueError, match="init"):
        BiDilConv(80, 16, 1, 1, init="xavier")


def test_plateau_schedule_reduces_after_patience_epochs_down_to_min_lr():
    cfg = tiny_config("train.scheduler.type=reducelronplateau", "train.adamw.lr=2e-4",
                      "train.scheduler.factor=0.8", "train.scheduler.patience=10",
                      "train.scheduler.min_lr=1e-4")
    assert is_per_epoch(cfg.train)
    assert not is_per_epoch(tiny_config("train.scheduler.type=none").train)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = build_scheduler(opt, cfg.train)
    lrs = []
    for epoch in range(60):
        sched.step(1.0 if epoch else 2.0)  # one improvement, then a plateau
        lrs.append(opt.param_groups[0]["lr"])
    # Epoch 1 sets the best (1.0); the 11th epoch without improvement (index 12) cuts the rate,
    # and every 11th after it, until min_lr.
    assert lrs[11] == pytest.approx(2e-4) and lrs[12] == pytest.approx(1.6e-4)
    assert lrs[22] == pytest.approx(1.6e-4) and lrs[23] == pytest.approx(1.28e-4)
    assert lrs[34] == pytest.approx(1.024e-4) and lrs[45] == pytest.approx(1e-4)
    assert lrs[-1] == pytest.approx(1e-4)


def test_amphion_objective_is_the_recipe_default():
    from utils.config import load_config
    from utils.paths import PROJECT_ROOT
    cfg = load_config(PROJECT_ROOT / "config/comosvc.json")
    t = cfg.train
    assert (t.prior_loss_form, t.ssim_form, t.grad_clip_scope) == ("amphion", "amphion", "per_module")
    assert (t.batch_size, t.adamw.lr, t.adamw.betas, t.adamw.weight_decay) == (32, 2e-4, [0.9, 0.999],
                                                                               0.01)
    s = t.scheduler
    assert (s.type, s.factor, s.patience, s.min_lr) == ("reducelronplateau", 0.8, 10, 1e-4)
    assert cfg.model.comosvc.decoder_init == "kaiming_normal"
