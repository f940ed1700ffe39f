"""VitsSVC maths: flow invertibility, the NSF source and decoder, the losses on hand-computed
numbers, shapes of the training and conversion passes, and one GAN step."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.base.dataset import SVCDataset, collate, load_singers, load_statistics
from models.svc.vits.f0_predictor import F0Predictor, f0_to_lf0, lf0_to_f0, normalise_lf0
from models.svc.vits.losses import (discriminator_loss, feature_matching_loss,
                                    generator_adversarial_loss, kl_loss, lf0_loss)
from models.svc.vits.model import VitsSVC, interpolate_unvoiced
from models.svc.vits.trainer import VitsGAN
from models.vocoders.discriminators import VitsDiscriminator
from models.vocoders.generator import fold_weight_norm
from models.vocoders.hifigan import HiFiGANGenerator
from models.vocoders.nsf_hifigan import NSFHiFiGANGenerator, harmonic_source, warm_start_from_hifigan
from modules.flow.coupling import ResidualCouplingFlow
from tests.synthetic_processed import tiny_vits_config


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return tiny_vits_config(tmp_path_factory.mktemp("vits"))


@pytest.fixture(scope="module")
def batch(cfg):
    ds = SVCDataset(cfg, "train", True, load_singers(cfg), load_statistics(cfg))
    return collate([ds[0], ds[1]])


def test_flow_inverts_to_1e_5():
    torch.manual_seed(0)
    flow = ResidualCouplingFlow(8, 16, 5, 1, 3, n_flows=4, gin_channels=6).double()
    for coupling in flow.flows:  # leave the identity start: non-zero coupling outputs
        torch.nn.init.normal_(coupling.post.weight, std=0.5)
    x = torch.randn(2, 8, 30, dtype=torch.float64)
    mask = torch.ones(2, 1, 30, dtype=torch.float64)
    mask[1, :, 20:] = 0
    x = x * mask
    g = torch.randn(2, 6, 1, dtype=torch.float64)
    z = flow(x, mask, g)
    assert (z - x).abs().max() > 0.1  # really transformed
    back = flow(z, mask, g, reverse=True)
    assert torch.allclose(back, x, atol=1e-5)
    flow32 = flow.float()
    back32 = flow32(flow32(x.float(), mask.float(), g.float()), mask.float(), g.float(), reverse=True)
    assert (back32 - x.float()).abs().max() < 1e-5


def test_kl_on_hand_numbers():
    # per element: log 2 - 0 - 1/2 + (2 - 0.5)^2 / (2 * 4) = 0.474397...
    z_p = torch.full((1, 2, 3), 2.0)
    m_p = torch.full((1, 2, 3), 0.5)
    logs_p = torch.full((1, 2, 3), math.log(2.0))
    logs_q = torch.zeros(1, 2, 3)
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    per = math.log(2.0) - 0.5 + 1.5 ** 2 / 8
    # 2 channels x 2 real frames, divided by the 2 real frames
    assert kl_loss(z_p, logs_q, m_p, logs_p, mask).item() == pytest.approx(2 * per, abs=1e-6)
    # posterior equal to the prior at its mean: KL estimate -1/2 per element
    assert kl_loss(m_p, logs_p, m_p, logs_p, mask).item() == pytest.approx(-1.0, abs=1e-6)


def test_gan_losses_on_hand_numbers():
    real = [torch.tensor([[1.0, 0.5]]), torch.tensor([[0.0]])]
    fake = [torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5]])]
    # D: (0 + 0.25) / 2 + (0 + 1) / 2 = 0.625;  (1)^2 + 0.5^2 = 1.25
    assert discriminator_loss(real, fake).item() == pytest.approx(0.625 + 1.25)
    # G: (1 + 0) / 2 + 0.25
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.5 + 0.25)
    fr = [[torch.tensor([1.0, 2.0]), torch.tensor([0.0])], [torch.tensor([3.0])]]
    ff = [[torch.tensor([0.0, 2.0]), torch.tensor([-2.0])], [torch.tensor([3.5])]]
    assert feature_matching_loss(fr, ff).item() == pytest.approx(0.5 + 2.0 + 0.5)


def test_interpolate_unvoiced():
    f0 = torch.tensor([[0.0, 100.0, 0.0, 0.0, 160.0, 0.0], [0.0] * 6])
    voiced = f0 > 0
    out = interpolate_unvoiced(f0, voiced)
    assert torch.allclose(out[0], torch.tensor([100.0, 100.0, 120.0, 140.0, 160.0, 160.0]))
    assert torch.equal(out[1], torch.zeros(6))


def test_harmonic_source_follows_f0():
    sr, n = 8000, 8000
    f0 = torch.full((1, n), 200.0)
    f0[:, n // 2:] = 0.0  # second half unvoiced
    src = harmonic_source(f0, sr, n_harmonics=2, generator=torch.Generator().manual_seed(0))
    assert src.shape == (1, n, 3)
    t = torch.arange(n // 2) / sr
    fundamental = 0.1 * torch.sin(2 * math.pi * 200.0 * (t + 1 / sr))
    assert (src[0, :n // 2, 0] - fundamental).abs().max() < 0.02  # sine + 0.003 noise
    spectrum = torch.fft.rfft(src[0, :n // 2, 1]).abs()  # 2nd harmonic at 400 Hz (2 Hz bins)
    assert spectrum.argmax().item() == 200
    assert src[0, n // 2:].std().item() == pytest.approx(0.1 / 3, rel=0.05)  # noise only


def test_nsf_decoder_shapes_and_warm_start():
    topology = dict(upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8], upsample_initial_channel=16,
                    resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]])
    nsf = NSFHiFiGANGenerator(6, 16000, 4, **topology)
    out = nsf(torch.randn(2, 6, 10), torch.full((2, 10), 150.0), torch.randn(2, 4, 1))
    assert out.shape == (2, 1, 160) and out.abs().max() <= 1
    hifigan = HiFiGANGenerator(n_mel=5, **{"upsample_rates": [4, 4], "upsample_kernel_sizes": [8, 8],
                                           "upsample_initial_channel": 16,
                                           "resblock_kernel_sizes": [3, 5],
                                           "resblock_dilation_sizes": [[1, 3], [1, 3]]})
    pre_before = nsf.conv_pre.weight.clone()
    copied = warm_start_from_hifigan(nsf, fold_weight_norm(hifigan.state_dict()))
    assert "ups.0.weight" in copied and "resblocks.3.convs2.1.weight" in copied
    assert torch.equal(nsf.ups[1].weight, hifigan.ups[1].weight)
    assert torch.equal(nsf.conv_post.weight, hifigan.conv_post.weight)
    assert torch.equal(nsf.conv_pre.weight, pre_before)  # latent input, not a mel: kept
    other = HiFiGANGenerator(n_mel=5, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
                             upsample_initial_channel=32, resblock_kernel_sizes=[3, 5],
                             resblock_dilation_sizes=[[1, 3], [1, 3]])
    with pytest.raises(ValueError, match="another topology"):
        warm_start_from_hifigan(nsf, other.state_dict())


def test_discriminator_shapes():
    full = VitsDiscriminator()
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(46.7e6, rel=1e-2)
    d = VitsDiscriminator(max_channels=64)
    y = torch.randn(2, 1, 1000)
    real, fake, fmap_r, fmap_f = d(y, y * 0.5)
    assert len(real) == len(fake) == 6 and all(r.shape[0] == 2 for r in real)
    assert [len(f) for f in fmap_r] == [7] + [6] * 5
    assert fmap_r[1][0].shape[-1] == 2 and fmap_r[5][0].shape[-1] == 11  # periods 2 ... 11


def test_training_and_conversion_shapes(cfg, batch):
    torch.manual_seed(0)
    model = VitsSVC(cfg)
    hop, seg = cfg.preprocess.hop_size, cfg.model.vits.segment_size
    out = model(batch)
    b, t = batch["mask"].shape
    assert out["y_hat"].shape == out["y"].shape == (b, 1, seg)
    for key in ("z_p", "m_p", "logs_p", "m_q", "logs_q"):
        assert out[key].shape == (b, cfg.model.vits.inter_channels, t)
    wav = model.eval().infer(batch, 0.4, torch.Generator().manual_seed(0))
    assert wav.shape == (b, t * hop) and wav.abs().max() <= 1
    # the window of real audio is the one the decoder saw: it is a slice of the batch audio
    row = batch["audio"][0]
    windows = row.unfold(0, seg, hop)
    assert (windows - out["y"][0, 0]).abs().sum(1).min() == 0


def test_one_gan_step_lowers_the_generator_loss(cfg, batch):
    torch.manual_seed(0)
    gan = VitsGAN(cfg)
    groups = gan.parameter_groups()
    opt_d = torch.optim.AdamW(groups["discriminator"], lr=2e-4, betas=(0.8, 0.99))
    opt_g = torch.optim.AdamW(groups["generator"], lr=2e-3, betas=(0.8, 0.99))

    def generator_loss():
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return gan.loss(batch)["loss"].item()

    d_loss = gan.loss(batch, part="discriminator")["loss"]
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    before = generator_loss()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        g_loss = gan.loss(batch, part="generator")["loss"]
    assert g_loss.item() == pytest.approx(before, rel=1e-5)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    after = generator_loss()
    assert after < before - 0.01 * abs(before)


def test_lf0_scale_and_normalisation_on_hand_numbers():
    f0 = torch.tensor([0.0, 700.0, 220.0])
    lf0 = f0_to_lf0(f0)
    assert lf0[0].item() == 0.0
    assert lf0[1].item() == pytest.approx(2595 * math.log10(2) / 500, rel=1e-6)   # 1.5622
    assert torch.allclose(lf0_to_f0(lf0), f0, atol=1e-3)
    lf0 = torch.tensor([[1.0, 2.0, 3.0, 5.0, 9.0], [4.0, 4.0, 4.0, 4.0, 4.0]])
    voiced = torch.tensor([[True, True, True, False, False], [False] * 5])
    mask = torch.tensor([[True, True, True, True, False], [True] * 5])
    # mean over the voiced frames 1, 2, 3 is 2; the padded frame is zeroed; no voiced frame: mean 0
    out = normalise_lf0(lf0, voiced, mask, random_scale=False)
    assert torch.equal(out, torch.tensor([[-1.0, 0.0, 1.0, 3.0, 0.0], [4.0] * 5]))
    torch.manual_seed(0)
    scaled = normalise_lf0(lf0, voiced, mask, random_scale=True)
    factor = scaled[0, 0] / -1.0
    assert 0.8 <= factor <= 1.2 and torch.allclose(scaled[0], out[0] * factor)


def test_f0_predictor_learns_each_singers_level():
    # The contour has its mean removed, so only the singer embedding can give the level: two
    # singers singing the same contour 0.3 lf0 apart must be told apart.
    torch.manual_seed(0)
    predictor = F0Predictor(16, 4, n_layers=1, n_heads=2, filter_channels=32, kernel_size=3,
                            dropout=0.0)
    singer = torch.nn.Embedding(2, 4)
    opt = torch.optim.Adam([*predictor.parameters(), *singer.parameters()], lr=3e-3)
    t = torch.linspace(0, 6, 40)
    contour = (0.1 * torch.sin(t)).expand(4, 40)
    ids = torch.tensor([0, 1, 0, 1])
    target = contour + torch.tensor([1.0, 1.3, 1.0, 1.3])[:, None]
    mask = torch.ones(4, 40, dtype=torch.bool)
    x = torch.zeros(4, 16, 40)

    def loss():
        pred = predictor(x, contour, mask, singer(ids)[:, :, None])
        return lf0_loss(pred, target, mask[:, None].float())

    first = loss().item()
    for _ in range(300):
        opt.zero_grad()
        step = loss()
        step.backward()
        opt.step()
    assert loss().item() < 0.01 * first and loss().item() < 1e-3  # error below 0.03 lf0


def test_conversion_sings_the_predicted_f0(cfg, batch):
    torch.manual_seed(0)
    model = VitsSVC(cfg).eval()
    out = model(batch)
    assert out["lf0_pred"].shape == out["lf0"].shape == batch["mask"].shape
    # A predictor that always says 300 Hz: the decoder gets 300 Hz on every real frame.
    torch.nn.init.zeros_(model.f0_predictor.proj.weight)
    torch.nn.init.constant_(model.f0_predictor.proj.bias, f0_to_lf0(torch.tensor(300.0)).item())
    seen = {}
    model.decoder.register_forward_pre_hook(lambda module, args: seen.update(f0=args[1]))
    model.infer(batch, 0.4, torch.Generator().manual_seed(0), predict_f0=True)
    real = batch["mask"]
    assert torch.allclose(seen["f0"][real], torch.full_like(seen["f0"][real], 300.0), rtol=1e-4)
    assert (seen["f0"][~real] == 0).all()
    seen.clear()
    model.infer(batch, 0.4, torch.Generator().manual_seed(0))
    assert not torch.allclose(seen["f0"][real], torch.full_like(seen["f0"][real], 300.0), rtol=1e-2)
    plain = tiny_vits_config(Path(cfg.log_dir).parent, overrides=["model.vits.use_f0_predictor=false"])
    without = VitsSVC(plain).eval()
    assert without.f0_predictor is None and "lf0_pred" not in without(batch)
    with pytest.raises(ValueError, match="no F0 predictor"):
        without.infer(batch, 0.4, predict_f0=True)


def test_full_size_generator_has_so_vits_svc_41s_parameter_count():
    from utils.config import load_config
    from utils.paths import PROJECT_ROOT
    model = VitsSVC(load_config(PROJECT_ROOT / "config" / "vitssvc.json"))
    total = sum(p.numel() for p in model.parameters())
    predictor = sum(p.numel() for p in model.f0_predictor.parameters())
    assert total == pytest.approx(52.4e6, rel=1e-3)          # so-vits-svc 4.1, F0 predictor included
    assert total - predictor == pytest.approx(45.9e6, rel=1e-3)
