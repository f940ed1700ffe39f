"""Consistency distillation (models/svc/comosvc/consistency.py): the loss in a case with a known
answer, EMA arithmetic, the distiller's frozen parts and export, and distillation of a real-data
teacher."""
from __future__ import annotations

import pytest
import torch

from models.svc.comosvc.consistency import consistency_sample
from models.svc.comosvc.distiller import ComoSVCDistiller, build_model
from models.svc.comosvc.edm import karras_sigmas
from models.svc.comosvc.model import ComoSVC
from tests.comosvc_fixtures import (OracleNetwork, overfitted_teacher, random_batch, real_clip,
                                    repeat, tiny_config, train)
from utils.config import ConfigError


def _distiller(*overrides: str) -> ComoSVCDistiller:
    torch.manual_seed(0)
    teacher = ComoSVC(tiny_config(*overrides))
    teacher.set_energy_range(-4.0, 1.0)
    # Move the teacher decoder off its zero-initialised output layer.
    torch.nn.init.normal_(teacher.decoder.output.weight, std=0.1)
    model = build_model(tiny_config("model.comosvc.distill=true", *overrides),
                        teacher_state_dict=teacher.state_dict())
    assert isinstance(model, ComoSVCDistiller)
    return model


def test_loss_is_zero_for_an_exact_teacher_step_and_a_consistent_student():
    """Data = a point mass at y. Its ideal denoiser is D = y, the PF-ODE trajectories are the
    straight lines x(sigma) = y + sigma z, so the teacher's Heun step is exact, and the consistency
    function is f*(x, sigma) = y + sigma_min (x - y) / sigma. With student = target = f* the
    distillation loss vanishes; a wrong teacher or a student != target does not."""
    d = _distiller().double()
    batch = random_batch(d.cfg, [24, 17], seed=2)
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    y, edm = batch["mel"], d.edm

    def consistent(shift: float = 0.0):
        return OracleNetwork(edm, lambda x, s, mu: y + 0.002 * (x - y) / s + shift)

    d.teacher.decoder = OracleNetwork(edm, lambda x, s, mu: y)
    d.student, d.target = consistent(), consistent()
    assert float(d.loss(batch)["loss"]) < 1e-20
    d.student = consistent(0.01)  # off by 0.01 everywhere: loss = 0.01^2
    assert float(d.loss(batch)["consistency_loss"]) == pytest.approx(1e-4, rel=1e-6)
    # Teacher = a point mass at y + c: x^_n = y + c + t_n / t_{n+1} (x_{n+1} - y - c), so
    # f*(x^_n, t_n) - f*(x_{n+1}, t_{n+1}) = sigma_min c (1 / t_n - 1 / t_{n+1}) per utterance.
    d.student, c = consistent(), 0.5
    d.teacher.decoder = OracleNetwork(edm, lambda x, s, mu: y + c)
    torch.manual_seed(5)
    loss = float(d.loss(batch)["loss"])
    torch.manual_seed(5)
    n = torch.randint(0, 39, (2,))
    t = karras_sigmas(40, 0.002, 80.0, 7.0).flip(0)
    gap = 0.002 * c * (1 / t[n] - 1 / t[n + 1])
    expected = (gap[0] ** 2 * 24 + gap[1] ** 2 * 17) / (24 + 17)
    assert loss == pytest.approx(float(expected), rel=1e-9) and loss > 1e-10


def test_ema_update_arithmetic_and_timing():
    d = _distiller("model.comosvc.ema_decay=0.8")
    with torch.no_grad():
        for p in d.student.parameters():
            p.fill_(1.0)
        for p in d.target.parameters():
            p.fill_(0.0)
    d.loss(random_batch(d.cfg, [10]))  # the loss alone never moves the target
    assert all(float(p.abs().max()) == 0.0 for p in d.target.parameters())
    d.after_optimizer_step()  # 0.8 * 0 + 0.2 * 1
    assert all(torch.allclose(p, torch.full_like(p, 0.2)) for p in d.target.parameters())
    d.after_optimizer_step()  # 0.8 * 0.2 + 0.2 * 1
    assert all(torch.allclose(p, torch.full_like(p, 0.36)) for p in d.target.parameters())


def test_distiller_freezes_teacher_and_exports_a_comosvc():
    d = _distiller()
    teacher_decoder = d.teacher.decoder.state_dict()
    for name, value in d.student.state_dict().items():
        assert torch.equal(value, teacher_decoder[name])
        assert torch.equal(d.target.state_dict()[name], teacher_decoder[name])
    assert {id(p) for p in d.trainable_parameters()} == {id(p) for p in d.student.parameters()}
    assert not any(p.requires_grad for p in d.teacher.parameters())
    assert not any(p.requires_grad for p in d.target.parameters())
    d.train()
    assert d.student.training and not d.teacher.training and not d.teacher.encoder.training
    assert not d.target.training

    batch = random_batch(d.cfg, [16, 9])
    d.loss(batch)["loss"].backward()
    assert all(p.grad is None for p in d.teacher.parameters())
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in d.student.parameters())

    # The export is a plain ComoSVC whose decoder is the target network.
    with torch.no_grad():
        for p in d.target.parameters():
            p.add_(0.01)
    exported = ComoSVC(tiny_config())
    exported.load_state_dict(d.export_state_dict())
    for name, value in d.target.state_dict().items():
        assert torch.equal(exported.decoder.state_dict()[name], value)
    exported.eval()
    d.eval()
    for steps in (1, 3):
        a = d.sample(batch, steps=steps, generator=torch.Generator().manual_seed(4))
        b = exported.sample(batch, steps=steps, student=True,
                            generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(a["mel"], b["mel"])
        assert float(a["mel"][1, :, 9:].abs().max()) == 0.0
    one = d.sample(batch, generator=torch.Generator().manual_seed(4))  # default: 1 step
    eps = torch.randn(one["mel"].shape, generator=torch.Generator().manual_seed(4))
    mask = batch["mask"]
    x = 80.0 * (eps + one["mu"]) * mask[:, None]
    expected = d.edm.denoise(d.target, x, 80.0, one["mu"], mask) * mask[:, None]
    torch.testing.assert_close(one["mel"], expected)
    with pytest.raises(ValueError, match="steps >= 1"):
        consistency_sample(d.edm, d.target, one["mu"], mask, steps=0)
    with pytest.raises(ConfigError, match="distill is false"):
        build_model(tiny_config(), teacher_state_dict=exported.state_dict())


def test_distilled_one_step_student_is_closer_to_the_teacher_than_its_one_step(demo_data):
    batch, _ = real_clip(demo_data)
    teacher = ComoSVC(tiny_config())
    teacher.load_state_dict(overfitted_teacher(demo_data))
    teacher.eval()

    def sample(model, steps, **kwargs):
        return model.sample(batch, steps=steps, generator=torch.Generator().manual_seed(7),
                            **kwargs)["mel"]

    teacher40, teacher1 = sample(teacher, 40), sample(teacher, 1, student=True)
    distiller = build_model(tiny_config("model.comosvc.distill=true",
                                        "model.comosvc.n_timesteps=10"),
                            teacher_state_dict=teacher.state_dict())
    train(distiller, repeat(batch, 8), steps=200, lr=3e-3)
    distiller.eval()
    student1 = sample(distiller, 1)
    gap_teacher = float((teacher1 - teacher40).abs().mean())
    gap_student = float((student1 - teacher40).abs().mean())
    print(f"mel L1 to the teacher's 40-step output: teacher 1-step {gap_teacher:.4f}, distilled "
          f"student 1-step {gap_student:.4f}")
    assert gap_student < gap_teacher
