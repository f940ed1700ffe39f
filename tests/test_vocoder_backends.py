"""Vocoder backends: each runtime's waveform against torch fp32 (a small random-weight HiFi-GAN),
the ONNX export cache (reused; a corrupt or stale one rebuilt with a warning), the ``auto`` choice
from a (fake) measurement and its per-machine cache, the CPU flag reading."""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from models.vocoders import backends, onnx_export
from models.vocoders.backends import Candidate, Measurement, pick, vocoder_runtime
from models.vocoders.formats import UNIVERSAL_HIFIGAN
from models.vocoders.hifigan import HiFiGANGenerator
from models.vocoders.runtimes import BackendUnavailableError, make_runtime
from utils.config import ConfigError, config_from_dict
from utils.cpu import cpu_flags, cpu_model, describe_cpu, native_bf16
from utils.schema import VocoderConfig

# fp32 runtimes differ from torch by float rounding only (measured SNR 127 dB). bf16 keeps 8
# mantissa bits (relative rounding 2^-9, ~54 dB per operation); over the generator's ~30 layers
# the measured SNR is 32-36 dB here and 24 dB for the universal HiFi-GAN: 20 dB catches a wrong
# graph (a dropped or misplaced layer gives ~0 dB) without flagging bf16 itself.
FP32_MIN_SNR_DB = 80.0
BF16_MIN_SNR_DB = 20.0


def snr_db(out: torch.Tensor, reference: torch.Tensor) -> float:
    return 10 * float(np.log10(reference.pow(2).sum().item() / (out - reference).pow(2).sum().item()))


@pytest.fixture(scope="module")
def tiny():
    """A random-weight HiFi-GAN V1 topology with 32 initial channels (hop 256) and its export."""
    torch.manual_seed(0)
    return HiFiGANGenerator(80, upsample_initial_channel=32).eval()


@pytest.fixture(scope="module")
def cache(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocoder_cache")
    onnx_file = onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", folder)
    return folder, onnx_file


def vocoder_cfg(folder, backend="auto", precision="auto") -> VocoderConfig:
    return VocoderConfig(type="hifigan", path="", backend=backend, precision=precision,
                         cache_dir=str(folder))


@pytest.mark.parametrize("backend,precision,bound", [
    ("onnxruntime", "fp32", FP32_MIN_SNR_DB), ("openvino", "fp32", FP32_MIN_SNR_DB),
    ("openvino", "bf16", BF16_MIN_SNR_DB), ("torch", "bf16", BF16_MIN_SNR_DB)])
def test_each_backend_matches_torch_fp32(tiny, cache, backend, precision, bound):
    if backend != "torch":
        pytest.importorskip(backend)
    runtime = vocoder_runtime(vocoder_cfg(cache[0], backend, precision), tiny, UNIVERSAL_HIFIGAN,
                              "hifigan")
    assert (runtime.backend, runtime.precision) == (backend, precision)
    reference = make_runtime("torch", "fp32", tiny)
    torch.manual_seed(2)
    for shape in [(2, 80, 37), (1, 80, 1), (3, 80, 64)]:  # the batch and time axes are dynamic
        mel = torch.randn(*shape) - 5.0
        out, expected = runtime(mel), reference(mel)
        assert out.shape == (shape[0], shape[2] * 256) and out.dtype == torch.float32
        assert snr_db(out, expected) >= bound, (shape, snr_db(out, expected))


def test_export_is_reused_and_a_broken_one_rebuilt(tiny, cache, tmp_path, monkeypatch, caplog):
    ort = pytest.importorskip("onnxruntime")
    exports = []

    def export(generator, n_mel, path):  # the module fixture's real export, copied
        exports.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cache[1].read_bytes())

    monkeypatch.setattr(onnx_export, "export_onnx", export)
    first = onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", tmp_path)
    assert len(exports) == 1 and first.parent.name.startswith("hifigan-")
    assert onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", tmp_path) == first
    assert len(exports) == 1  # reused, not exported again

    good = first.read_bytes()
    first.write_bytes(good[:len(good) // 2])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        again = onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", tmp_path)
    assert again == first and len(exports) == 2
    assert "does not match its recorded SHA-256" in caplog.text and "rebuilding" in caplog.text
    session = ort.InferenceSession(str(again), providers=["CPUExecutionProvider"])
    mel = torch.randn(1, 80, 5) - 5.0
    with torch.no_grad():
        expected = tiny(mel).numpy()
    assert np.allclose(session.run(None, {"mel": mel.numpy()})[0], expected, atol=1e-5)

    meta = first.parent / onnx_export.META_NAME
    meta.write_text("{not json", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", tmp_path)
    assert len(exports) == 3 and "unreadable" in caplog.text
    assert json.loads(meta.read_text())["onnx_sha256"] == onnx_export.file_sha256(first)

    # Other weights or other mel settings: another key, so another folder (never the stale one).
    torch.manual_seed(5)
    other = HiFiGANGenerator(80, upsample_initial_channel=32).eval()
    assert onnx_export.cached_onnx(other, UNIVERSAL_HIFIGAN, "hifigan", tmp_path).parent != \
        first.parent and len(exports) == 4
    key = onnx_export.generator_key(tiny, UNIVERSAL_HIFIGAN)
    assert key != onnx_export.generator_key(
        tiny, dataclasses.replace(UNIVERSAL_HIFIGAN, fmax=11025.0))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": "0" * 64}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        onnx_export.cached_onnx(tiny, UNIVERSAL_HIFIGAN, "hifigan", tmp_path)
    assert len(exports) == 5 and "other weights or settings" in caplog.text


def m(backend, precision, seconds, error=0.300, snr=20.0) -> Measurement:
    return Measurement(backend, precision, seconds, error, snr)


MEASURED = [m("torch", "fp32", 1.0, 0.300, float("inf")), m("torch", "bf16", 0.7, 0.301),
            m("onnxruntime", "fp32", 0.6, 0.300, 110.0), m("openvino", "fp32", 0.5, 0.300, 100.0),
            m("openvino", "bf16", 0.2, 0.350)]  # the fastest, but its spectrum is off by 0.05


def test_auto_takes_the_fastest_accurate_backend(caplog):
    assert pick(MEASURED, "auto", "auto").candidate == Candidate("openvino", "fp32")
    accurate_bf16 = MEASURED[:4] + [m("openvino", "bf16", 0.2, 0.309)]  # SNR 20 dB, spectrum ok
    assert pick(accurate_bf16, "auto", "auto").candidate == Candidate("openvino", "bf16")
    assert pick(MEASURED, "torch", "auto").candidate == Candidate("torch", "bf16")
    assert pick(MEASURED, "auto", "fp32").candidate == Candidate("openvino", "fp32")
    high_snr = MEASURED[:4] + [m("openvino", "bf16", 0.2, 0.5, 31.0)]
    assert pick(high_snr, "auto", "bf16").candidate == Candidate("openvino", "bf16")
    with caplog.at_level(logging.WARNING):  # only inaccurate ones fit: the fastest, loudly
        assert pick(MEASURED, "openvino", "bf16").candidate == Candidate("openvino", "bf16")
    assert "accuracy bound" in caplog.text
    with pytest.raises(ValueError, match="torch fp32"):
        pick(MEASURED[1:], "auto", "auto")


def test_auto_measures_once_per_machine(tiny, cache, monkeypatch, caplog):
    pytest.importorskip("openvino")
    folder = cache[0]
    calls = []

    def fake_measure(runtimes, settings):
        calls.append(sorted(map(str, runtimes)))
        speed = {"openvino bf16": 0.2, "openvino fp32": 0.5}
        return [m(c.backend, c.precision, speed.get(str(c), 1.0),
                  0.300 if str(c) != "torch bf16" else 0.5,
                  float("inf") if c == backends.REFERENCE else 20.0) for c in runtimes]

    monkeypatch.setattr(backends, "measure", fake_measure)
    monkeypatch.setattr(backends, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    fingerprint = {"cpu": "test CPU", "flags": "amx_bf16 avx512f", "threads": 1, "versions": {}}
    monkeypatch.setattr(backends, "machine_fingerprint", lambda: dict(fingerprint))
    first = vocoder_runtime(vocoder_cfg(folder), tiny, UNIVERSAL_HIFIGAN, "hifigan")
    assert (first.backend, first.precision) == ("openvino", "bf16") and len(calls) == 1
    assert "torch fp32" in calls[0] and "openvino bf16" in calls[0]
    second = vocoder_runtime(vocoder_cfg(folder), tiny, UNIVERSAL_HIFIGAN, "hifigan")
    assert (second.backend, second.precision) == ("openvino", "bf16") and len(calls) == 1
    # torch, precision auto: chosen from the same cached measurement (bf16 is off spectrally)
    third = vocoder_runtime(vocoder_cfg(folder, "torch"), tiny, UNIVERSAL_HIFIGAN, "hifigan")
    assert (third.backend, third.precision) == ("torch", "fp32") and len(calls) == 1

    choice, = (folder / f"hifigan-{onnx_export.generator_key(tiny, UNIVERSAL_HIFIGAN)[:16]}"
               ).glob("choice-*.json")
    choice.write_text("[broken", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        vocoder_runtime(vocoder_cfg(folder), tiny, UNIVERSAL_HIFIGAN, "hifigan")
    assert len(calls) == 2 and "measuring again" in caplog.text
    fingerprint["threads"] = 2  # another machine (or thread count): measured for it
    vocoder_runtime(vocoder_cfg(folder), tiny, UNIVERSAL_HIFIGAN, "hifigan")
    assert len(calls) == 3


def test_measure_scores_against_torch_fp32(tiny):
    runtimes = {backends.REFERENCE: make_runtime("torch", "fp32", tiny),
                Candidate("torch", "bf16"): make_runtime("torch", "bf16", tiny)}
    ref, bf16 = backends.measure(runtimes, UNIVERSAL_HIFIGAN)
    assert ref.snr_db == float("inf") and ref.seconds > 0
    assert BF16_MIN_SNR_DB <= bf16.snr_db < FP32_MIN_SNR_DB
    assert 0 < ref.resynth_error < 20 and abs(bf16.resynth_error - ref.resynth_error) < 0.05


def test_candidates_follow_the_cpu_flags_and_packages(monkeypatch, tiny, tmp_path):
    installed = ["torch", "onnxruntime", "openvino"]
    names = lambda flags: [str(c) for c in backends.measurable_candidates(flags, installed)]  # noqa
    assert names(frozenset({"avx2", "avx512_bf16"})) == [
        "torch fp32", "torch bf16", "onnxruntime fp32", "openvino fp32", "openvino bf16"]
    assert names(frozenset({"avx2", "avx512f"})) == ["torch fp32", "onnxruntime fp32",
                                                     "openvino fp32"]
    assert "openvino bf16" in names(None)  # unknown flags: measure rather than assume
    assert [str(c) for c in backends.measurable_candidates(None, ["torch"])] == ["torch fp32",
                                                                               "torch bf16"]
    monkeypatch.setattr("models.vocoders.runtimes.installed_backends", lambda: ["torch"])
    with pytest.raises(BackendUnavailableError, match="pip install openvino"):
        vocoder_runtime(vocoder_cfg(tmp_path, "openvino", "fp32"), tiny, UNIVERSAL_HIFIGAN,
                        "hifigan")


def test_cpu_flags_are_read_not_assumed():
    info = ("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu avx2 avx512f "
            "amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = cpu_flags(info)
    assert cpu_model(info) == "Example CPU 9000" and "amx_bf16" in flags and native_bf16(flags)
    assert native_bf16(cpu_flags("model name : Old\nflags : fpu avx2\n")) is False
    assert cpu_flags("model name : No flags line\n") is None and native_bf16(None) is None
    line = describe_cpu(info)
    assert "amx_bf16 yes" in line and "avx512_bf16 no" in line and "Example CPU 9000" in line


def test_onnxruntime_has_no_bf16():
    with pytest.raises(ConfigError, match="onnxruntime"):
        config_from_dict({"vocoder": {"type": "griffin_lim", "backend": "onnxruntime",
                                      "precision": "bf16"}})
    assert config_from_dict({"vocoder": {"backend": "openvino", "precision": "bf16"}}
                            ).vocoder.backend == "openvino"
