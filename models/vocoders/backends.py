"""Which runtime a vocoder generator runs on: ``vocoder.backend`` (auto | torch | openvino |
onnxruntime) and ``vocoder.precision`` (auto | fp32 | bf16).

A setting left at ``auto`` is decided by measurement, once per machine and generator: every
runtime installed here (models/vocoders/runtimes.py; bf16 only where the CPU flags do not rule
it out, utils/cpu.py) vocodes a synthetic sung probe (:func:`probe_signal`), and the fastest one
whose output is accurate enough is taken. Accurate enough means, against torch fp32 on the same
mel, a waveform SNR of at least :data:`MIN_SNR_DB`, or a resynthesis error (mean absolute
difference between the log-mel of the output and the probe's log-mel) at most
:data:`MAX_RESYNTH_EXCESS` above torch fp32's own. (bf16 arithmetic moves a GAN vocoder's phase,
so its waveform SNR is low while its spectrum, what is heard, matches.) The measurement is cached
beside the ONNX export (models/vocoders/onnx_export.py) in ``choice-<machine>.json``, keyed by the
CPU model and flags, the thread count and the runtime versions; an unreadable file is measured
again with a warning.

The ONNX runtimes run on the CPU; on a GPU device ``auto`` means torch (fp32 unless bf16 is set).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.vocoders.formats import MelSettings
from models.vocoders.onnx_export import cache_folder, cached_onnx, generator_key
from models.vocoders.runtimes import (ONNX_BACKENDS, check_installed, installed_backends,
                                      make_runtime)
from utils.cpu import cpu_flags, cpu_model, native_bf16
from utils.io import load_json, save_json
from utils.paths import resolve_path

log = logging.getLogger(__name__)

MIN_SNR_DB = 30.0
MAX_RESYNTH_EXCESS = 0.01
PROBE_SECONDS = 1.0
REPEATS = 2


@dataclass(frozen=True)
class Candidate:
    """One way to run the generator: backend in runtimes.BACKENDS, precision "fp32" / "bf16"."""

    backend: str
    precision: str

    def __str__(self) -> str:
        return f"{self.backend} {self.precision}"


REFERENCE = Candidate("torch", "fp32")


@dataclass(frozen=True)
class Measurement:
    """A candidate on the probe: ``seconds`` (fastest of :data:`REPEATS` calls), ``resynth_error``
    (mean |log-mel(output) - log-mel(probe)|, natural log), ``snr_db`` (waveform SNR against torch
    fp32's output, dB; inf for torch fp32 itself)."""

    backend: str
    precision: str
    seconds: float
    resynth_error: float
    snr_db: float

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.backend, self.precision)


def measurable_candidates(flags: frozenset[str] | None, installed: list[str]) -> list[Candidate]:
    """Every candidate worth measuring here: torch fp32 first, then torch bf16, onnxruntime fp32,
    openvino fp32 and bf16 as installed; bf16 only unless the flags say the CPU lacks it."""
    bf16 = native_bf16(flags) is not False
    out = [REFERENCE] + ([Candidate("torch", "bf16")] if bf16 else [])
    if "onnxruntime" in installed:
        out.append(Candidate("onnxruntime", "fp32"))
    if "openvino" in installed:
        out += [Candidate("openvino", "fp32")] + ([Candidate("openvino", "bf16")] if bf16 else [])
    return out


def allowed(candidate: Candidate, backend: str, precision: str) -> bool:
    """Whether a candidate fits ``vocoder.backend`` / ``vocoder.precision`` ("auto" fits all)."""
    return backend in ("auto", candidate.backend) and precision in ("auto", candidate.precision)


def accurate(m: Measurement, reference: Measurement) -> bool:
    """Within the accuracy bound of torch fp32 (module docstring)."""
    return m.snr_db >= MIN_SNR_DB or m.resynth_error <= reference.resynth_error + MAX_RESYNTH_EXCESS


def pick(measurements: list[Measurement], backend: str, precision: str) -> Measurement:
    """The fastest accurate measurement that fits the settings; when none that fits is accurate,
    the fastest that fits, with a warning.

    Raises: ValueError when no measurement fits the settings or torch fp32 was not measured.
    """
    reference = next((m for m in measurements if m.candidate == REFERENCE), None)
    if reference is None:
        raise ValueError("the measurement lacks torch fp32, the accuracy reference")
    pool = [m for m in measurements if allowed(m.candidate, backend, precision)]
    if not pool:
        raise ValueError(f"no measured vocoder backend fits backend={backend}, "
                         f"precision={precision}")
    good = [m for m in pool if accurate(m, reference)]
    if not good:
        best = min(pool, key=lambda m: m.seconds)
        log.warning("no vocoder backend fitting backend=%s precision=%s is within the accuracy "
                    "bound of torch fp32; using %s (resynthesis log-mel error %.4f vs %.4f)",
                    backend, precision, best.candidate, best.resynth_error,
                    reference.resynth_error)
        return best
    return min(good, key=lambda m: m.seconds)


def probe_signal(sample_rate: int, seconds: float = PROBE_SECONDS) -> np.ndarray:
    """A deterministic sung-like test signal, (samples,) float32, peak 0.5: four notes on a
    glide of +-3 semitones around 220 Hz with a 5.5 Hz, +-30 cent vibrato, every harmonic below
    Nyquist at amplitude 1/k, 30 ms fades per note and a little white noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 220.0 * 2.0 ** (0.25 * np.sin(2 * np.pi * 0.5 * t) + 0.025 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wav = sum(np.sin(k * phase) / k for k in range(1, int(sample_rate / 2 / f0.max()) + 1))
    note = (t * 4 / seconds) % 1.0 * seconds / 4  # seconds into the current note
    fade = np.clip(np.minimum(note, seconds / 4 - note) / 0.03, 0.0, 1.0)
    wav = wav * fade + 0.02 * rng.standard_normal(len(t))
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


def measure(runtimes: dict[Candidate, Callable], settings: MelSettings) -> list[Measurement]:
    """Time and score each runtime on the probe (module docstring).

    Args: runtimes: candidate -> built runtime (torch fp32 among them); settings: the mel.
    Returns: one :class:`Measurement` per runtime.
    """
    from processors.mel import mel_spectrogram

    wav = probe_signal(settings.sample_rate)
    mel = mel_spectrogram(wav, settings)  # MelSettings has the attributes mel_spectrogram reads
    outputs, seconds = {}, {}
    for candidate, runtime in tqdm(runtimes.items(), desc="measuring vocoder backends (once)",
                                   leave=False):
        runtime(mel[None, :, :16])  # warm-up: first-call allocations, OpenVINO's shape inference
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            out = runtime(mel[None])[0]
            times.append(time.perf_counter() - start)
        outputs[candidate], seconds[candidate] = out.float().cpu(), min(times)
    reference = outputs[REFERENCE]
    result = []
    for candidate, out in outputs.items():
        n = min(mel.shape[-1], out.shape[-1] // settings.hop_size)
        error = (mel_spectrogram(out, settings)[:, :n] - mel[:, :n]).abs().mean().item()
        noise = (out - reference).pow(2).sum().item()
        snr = float("inf") if noise == 0 else 10 * np.log10(reference.pow(2).sum().item() / noise)
        result.append(Measurement(candidate.backend, candidate.precision, seconds[candidate],
                                  error, float(snr)))
    return result


def machine_fingerprint() -> dict:
    """What a speed measurement depends on: CPU model and flags, threads, runtime versions."""
    versions = {}
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    flags = cpu_flags()
    return {"cpu": cpu_model(), "flags": " ".join(sorted(flags)) if flags is not None else None,
            "threads": torch.get_num_threads(), "versions": versions}


def _choice_file(folder: Path, machine: dict) -> Path:
    digest = hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()
    return folder / f"choice-{digest[:16]}.json"


def _read_measurements(path: Path, machine: dict, wanted: list[Candidate]) -> list[Measurement] | None:
    """The cached measurement of ``wanted`` on ``machine``; None when absent, unreadable (with a
    warning) or of another set of runtimes."""
    if not path.is_file():
        return None
    try:
        data = load_json(path)
        if data["machine"] != machine:
            raise ValueError("another machine's")
        measured = [Measurement(**m) for m in data["measurements"]]
        failed = {Candidate(*c) for c in data["failed"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("vocoder backend measurement %s unreadable (%s); measuring again", path, e)
        return None
    if {m.candidate for m in measured} | failed != set(wanted):
        return None  # another set of runtimes is installed now
    return measured


def vocoder_runtime(vocoder_cfg, generator: nn.Module, settings: MelSettings, kind: str,
                    device: str | torch.device = "cpu"):
    """The runtime ``vocoder_cfg`` asks for, measured and cached as the module docstring says.

    Args: vocoder_cfg: :class:`utils.schema.VocoderConfig` (backend, precision, cache_dir);
        generator: on the CPU (it is moved to ``device`` for torch); settings: its mel; kind:
        "hifigan" / "bigvgan"; device: where torch runs it.
    Returns: a runtime of models/vocoders/runtimes.py.
    Raises: runtimes.BackendUnavailableError for an explicit backend that is not installed;
        OSError / export errors when an explicit ONNX backend cannot be exported or cached (with
        ``auto``, such a backend is left out of the measurement with a warning).
    """
    backend, precision = vocoder_cfg.backend, vocoder_cfg.precision
    device = torch.device(device)
    cache_dir = resolve_path(vocoder_cfg.cache_dir)

    def build(candidate: Candidate, key: str | None = None):
        if candidate.backend in ONNX_BACKENDS:
            check_installed(candidate.backend)  # before the export, not after it
            onnx_file = cached_onnx(generator, settings, kind, cache_dir, key)
            return make_runtime(candidate.backend, candidate.precision, generator, onnx_file)
        return make_runtime("torch", candidate.precision, generator.to(device))

    if device.type != "cpu" and backend in ("auto", "torch"):
        return build(Candidate("torch", "fp32" if precision == "auto" else precision))
    if device.type != "cpu":
        log.warning("vocoder.backend = %s runs on the CPU, not on %s", backend, device)
    flags = cpu_flags()
    if precision == "bf16" and native_bf16(flags) is False:
        log.warning("vocoder.precision = bf16: this CPU has neither AMX-BF16 nor AVX512-BF16, so "
                    "bf16 is emulated and likely slower than fp32")
    if backend != "auto" and precision != "auto":
        return build(Candidate(backend, precision))
    wanted = measurable_candidates(flags, installed_backends())
    fitting = [c for c in wanted if allowed(c, backend, precision)]
    if not fitting:  # e.g. precision bf16 on a CPU without it: nothing was going to be measured
        return build(Candidate("torch" if backend == "auto" else backend,
                               "fp32" if precision == "auto" else precision))
    if len(fitting) == 1:
        return build(fitting[0])
    key = generator_key(generator, settings)
    machine = machine_fingerprint()
    choice_file = _choice_file(cache_folder(cache_dir, kind, key), machine)
    measured = _read_measurements(choice_file, machine, wanted)
    runtimes = {}
    if measured is None:
        failed = []
        for candidate in wanted:
            try:
                runtimes[candidate] = build(candidate, key)
            except Exception as e:  # noqa: BLE001 - auto leaves a failing runtime out, loudly
                if candidate == REFERENCE:
                    raise
                log.warning("vocoder backend %s left out: %s: %s", candidate, type(e).__name__,
                            str(e)[:300])
                failed.append(candidate)
        measured = measure(runtimes, settings)
        try:
            save_json(choice_file, {"machine": machine, "failed": [[c.backend, c.precision]
                                                                   for c in failed],
                                    "measurements": [dataclasses.asdict(m) for m in measured]})
        except OSError as e:
            log.warning("cannot cache the vocoder backend measurement in %s: %s", choice_file, e)
    best = pick(measured, backend, precision)
    reference = next(m for m in measured if m.candidate == REFERENCE)
    log.info("vocoder backend %s (measured: %.1fx torch fp32's speed, resynthesis log-mel error "
             "%.4f vs %.4f)", best.candidate, reference.seconds / best.seconds,
             best.resynth_error, reference.resynth_error)
    return runtimes.get(best.candidate) or build(best.candidate, key)
