"""Options of the quality experiments (issue 13): shallow diffusion (inference.comosvc.shallow_sigma)
and the teacher's weight EMA (model.comosvc.teacher_ema_decay)."""
from __future__ import annotations

import pytest
import torch

from models.svc.comosvc.consistency import consistency_sample
from models.svc.comosvc.edm import EDM
from models.svc.comosvc.model import ComoSVC
from tests.comosvc_fixtures import OracleNetwork, random_batch, tiny_config
from utils.config import ConfigError


def _mu_and_mask():
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(2, 8, 12, generator=g, dtype=torch.float64) * 2 - 1
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    return mu, mask


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_shallow_sampling_starts_from_the_noised_mu(sampler):
    # With D(x) = x the ODE does not move, so the sample is the starting point itself:
    # mu + sigma_start (eps + mu) with the generator's first draw, zero on padded frames.
    edm = EDM()
    net = OracleNetwork(edm, lambda x, sigma, mu: x)
    mu, mask = _mu_and_mask()
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5), dtype=mu.dtype)
    m = mask[:, None, :].to(mu.dtype)
    out = edm.sample(net, mu, mask, 4, sampler, torch.Generator().manual_seed(5), sigma_start=1.5)
    assert torch.allclose(out, (mu + 1.5 * (eps + mu)) * m, atol=1e-9)
    full = edm.sample(net, mu, mask, 4, sampler, torch.Generator().manual_seed(5))
    assert torch.allclose(full, 80.0 * (eps + mu) * m, atol=1e-7)
    with pytest.raises(ValueError, match="sigma_start"):
        edm.sample(net, mu, mask, 4, sampler, sigma_start=100.0)


def test_shallow_consistency_step_denoises_the_noised_mu():
    edm = EDM()
    seen = []
    net = OracleNetwork(edm, lambda x, sigma, mu: (seen.append((x, sigma)), 0.5 * mu)[1])
    mu, mask = _mu_and_mask()
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2), dtype=mu.dtype)
    out = consistency_sample(edm, net, mu, mask, 1, torch.Generator().manual_seed(2), sigma_start=2.0)
    x, sigma = seen[0]
    m = mask[:, None, :].to(mu.dtype)
    assert torch.allclose(sigma, torch.full_like(sigma, 2.0))
    assert torch.allclose(x * m, (mu + 2.0 * (eps + mu)) * m, atol=1e-9)
    assert torch.allclose(out, 0.5 * mu * m, atol=1e-9)


def test_shallow_sigma_must_lie_on_the_noise_range():
    assert tiny_config("inference.comosvc.shallow_sigma=2.0").inference.comosvc.shallow_sigma == 2.0
    with pytest.raises(ConfigError, match="shallow_sigma"):
        tiny_config("inference.comosvc.shallow_sigma=0.001")


def test_teacher_weight_ema_updates_exports_and_restarts():
    cfg = tiny_config("model.comosvc.teacher_ema_decay=0.75")
    torch.manual_seed(0)
    model = ComoSVC(cfg, weight_ema=True)
    model.set_energy_range(0.0, 5.0)
    assert ComoSVC(cfg).weight_ema is None  # conversion's plain model
    names = {n for n, _ in model.named_parameters()}
    trained = {id(p) for p in model.trainable_parameters()}
    assert all(id(p) not in trained for n, p in model.named_parameters() if n.startswith("weight_ema."))
    assert len(trained) == len([n for n in names if not n.startswith("weight_ema.")])
    w = model.decoder.input.weight
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    model.after_optimizer_step()
    ema = model.weight_ema["decoder"].input.weight
    assert torch.allclose(ema, start + 0.25)  # 0.75 * old + 0.25 * new
    export = model.export_state_dict()
    assert not any(k.startswith("weight_ema.") for k in export)
    assert torch.equal(export["decoder.input.weight"], ema)
    plain = ComoSVC(cfg)
    plain.load_state_dict(export)
    batch = random_batch(cfg, [10, 7])
    model.eval()
    plain.eval()
    # Fine-tuning from an export restarts the EMA from the loaded weights.
    model.load_state_dict(export)
    assert torch.equal(model.weight_ema["decoder"].input.weight, export["decoder.input.weight"])
    assert torch.allclose(model.encode(batch), plain.encode(batch))
    # A full training state dict (with the EMA) round-trips as is.
    again = ComoSVC(cfg, weight_ema=True)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.weight_ema["decoder"].input.weight, ema)
