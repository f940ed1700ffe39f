"""F0 (fundamental frequency) in Hz on the mel frames, from one of several pitch trackers.

Every tracker reports F0 on its own frames; :func:`extract_f0` takes each tracker's own frame
centre times and maps the track onto the mel frame centres of :func:`processors.mel.mel_frame_times`
(frame i centred at sample ``i * hop + hop / 2`` of the unpadded signal) with
:func:`to_mel_frames`. Nothing is padded or cut to length, so a tracker whose first frame sits
30 ms into the signal (Praat) stays aligned; Amphion right-pads Praat's shorter track instead and
ends up about 2.6 frames early.

Trackers (``preprocess.f0_extractor``), all bounded by ``preprocess.f0_min``/``f0_max``:

- ``parselmouth``: Praat's autocorrelation method (Boersma 1993, "Accurate short-term analysis of
  the fundamental frequency and the harmonics-to-noise ratio of a sampled sound"), ``to_pitch_ac``
  with voicing threshold 0.6, time step = one hop; frame times from ``Pitch.xs()``.
- ``dio``: WORLD DIO (Morise et al. 2009) refined by StoneMask (pyworld), frame period = one hop;
  frame i at ``i * frame_period``.
- ``harvest``: WORLD Harvest (Morise 2017, Interspeech), same frames as ``dio``.
- ``pyin``: probabilistic YIN (Mauch & Dixon 2014, ICASSP) from librosa (>= 0.11, whose YIN
  difference function spans the whole frame), centred frames at ``i * hop``.
- ``crepe_full`` / ``crepe_tiny``: CREPE (Kim et al. 2018, ICASSP) through torchcrepe at 16 kHz,
  10 ms hop, centred frames at ``i * 160`` samples, Viterbi decoding refined by the local weighted
  average, frames whose 3-frame median periodicity is below 0.21 unvoiced (torchcrepe's README
  threshold).
- ``fcpe``: FCPE (Luo et al. 2024, "FCPE: A Fast Context-based Pitch Estimation Model") through
  torchfcpe at 16 kHz; its mel frames (n_fft 1024, hop 160, left pad 432) are centred at
  ``i * 160 + 80`` samples.

torchcrepe and torchfcpe import torchaudio, which has no build for torch 2.13, so they are optional:
asking for them without an importable package raises :class:`F0ExtractorUnavailable`.
"""
from __future__ import annotations

import functools

import numpy as np

from processors.mel import mel_frame_times
from utils.schema import PreprocessConfig

# Praat's default voicing threshold is 0.45; 0.6 rejects more breath and noise (issue 3, Amphion).
PRAAT_VOICING_THRESHOLD = 0.6
# Rate (Hz) and hop (samples) of the neural trackers' input.
NEURAL_SAMPLE_RATE = 16000
NEURAL_HOP = 160
# torchcrepe README: periodicity below this is unvoiced; median-filtered over 3 frames first.
CREPE_PERIODICITY_THRESHOLD = 0.21
CREPE_MEDIAN_WIDTH = 3
# CREPE's pitch bins: 20 cents apart, bin 0 at 1997.38 cents (about 32.7 Hz) above 10 Hz.
CREPE_CENTS_PER_BIN = 20
CREPE_CENTS_OFFSET = 1997.3794084376191
# torchfcpe's default confidence threshold for its local-argmax decoder.
FCPE_THRESHOLD = 0.006


class F0ExtractorUnavailable(RuntimeError):
    """The configured pitch tracker's package cannot be imported here."""


class F0Error(ValueError):
    """A signal the pitch tracker cannot analyse (e.g. shorter than its analysis window)."""


def to_mel_frames(times: np.ndarray, f0: np.ndarray, target_times: np.ndarray) -> np.ndarray:
    """Map an F0 track onto other frame times.

    A target time between two voiced frames gets the linear interpolation of their F0; a target
    time next to an unvoiced frame takes the value of the nearer frame, so a voicing boundary lands
    halfway between the tracker's frames and no F0 is ever averaged with a 0. Targets before the
    first or after the last frame take that edge frame's value.

    Args:
        times: (N,) increasing frame centre times of the track, seconds.
        f0: (N,) F0 in Hz, 0 where unvoiced.
        target_times: (T,) frame centre times wanted, seconds.
    Returns: (T,) float32 F0 in Hz, 0 where unvoiced.
    Raises: F0Error if the track is empty.
    """
    times = np.asarray(times, dtype=np.float64)
    f0 = np.asarray(f0, dtype=np.float64)
    if times.size == 0:
        raise F0Error("the pitch tracker returned no frames")
    right = np.clip(np.searchsorted(times, target_times), 0, times.size - 1)
    left = np.clip(right - 1, 0, times.size - 1)
    nearer = np.where(np.abs(target_times - times[left]) <= np.abs(times[right] - target_times),
                      left, right)
    both_voiced = (f0[left] > 0) & (f0[right] > 0)
    out = np.where(both_voiced, np.interp(target_times, times, f0), f0[nearer])
    return out.astype(np.float32)


def _parselmouth(wav: np.ndarray, sr: int, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    import parselmouth
    sound = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=sr)
    try:
        pitch = sound.to_pitch_ac(time_step=cfg.hop_size / sr, voicing_threshold=PRAAT_VOICING_THRESHOLD,
                                  pitch_floor=cfg.f0_min, pitch_ceiling=cfg.f0_max)
    except parselmouth.PraatError as e:
        raise F0Error(f"Praat cannot analyse this signal: {e}".strip()) from None
    return pitch.xs(), pitch.selected_array["frequency"]


def _world(wav: np.ndarray, sr: int, cfg: PreprocessConfig, method: str):
    import pyworld
    x = wav.astype(np.float64)
    period_ms = 1000.0 * cfg.hop_size / sr
    if method == "dio":
        f0, t = pyworld.dio(x, sr, f0_floor=cfg.f0_min, f0_ceil=cfg.f0_max, frame_period=period_ms)
        f0 = pyworld.stonemask(x, f0, t, sr)
    else:
        f0, t = pyworld.harvest(x, sr, f0_floor=cfg.f0_min, f0_ceil=cfg.f0_max, frame_period=period_ms)
    return t, f0


def _pyin(wav: np.ndarray, sr: int, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    import librosa
    # The frame must hold a few periods of the lowest F0 (librosa requires at least two).
    frame_length = max(2048, 1 << int(np.ceil(np.log2(4 * sr / cfg.f0_min))))
    f0, voiced, _ = librosa.pyin(wav, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=sr,
                                 frame_length=frame_length, hop_length=cfg.hop_size, center=True)
    f0 = np.where(voiced & np.isfinite(f0), f0, 0.0)
    return np.arange(f0.size) * cfg.hop_size / sr, f0


def _import(package: str, extractor: str):
    try:
        return __import__(package)
    except Exception as e:  # ImportError, or torchaudio's own failures at import time
        raise F0ExtractorUnavailable(
            f"preprocess.f0_extractor = {extractor!r} needs the {package} package, which is not "
            f"importable here ({type(e).__name__}: {e}); {package} imports torchaudio, which has no "
            f"build for this torch. Install {package} and torchaudio, or choose parselmouth, dio, "
            f"harvest or pyin.") from None


def _torch_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _to_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    import soxr
    return wav if sr == NEURAL_SAMPLE_RATE else soxr.resample(wav, sr, NEURAL_SAMPLE_RATE, quality="HQ")


def _crepe_decoder(probabilities):
    """Viterbi path over CREPE's 360 pitch bins, refined to the probability-weighted mean cents of
    the 9 bins around it (the original CREPE's local average; Kim et al. 2018). torchcrepe's own
    viterbi returns bin centres plus random dither of up to +-10 cents, more than 0.5 %.

    Args: probabilities (batch, 360, frames), -inf outside [f0_min, f0_max].
    Returns: (bins (batch, frames) long, F0 (batch, frames) Hz).
    """
    import torch
    import torchcrepe
    bins, _ = torchcrepe.decode.viterbi(probabilities)
    window = (bins[:, None, :] + torch.arange(-4, 5, device=bins.device)[None, :, None]).clamp(0, 359)
    weights = probabilities.gather(1, window).clamp_min(0.0)
    cents = CREPE_CENTS_PER_BIN * window + CREPE_CENTS_OFFSET
    cents = (weights * cents).sum(1) / weights.sum(1).clamp_min(1e-8)
    return bins, 10.0 * 2.0 ** (cents / 1200.0)


def _crepe(wav: np.ndarray, sr: int, cfg: PreprocessConfig, capacity: str):
    import torch
    torchcrepe = _import("torchcrepe", f"crepe_{capacity}")
    x = torch.from_numpy(np.ascontiguousarray(_to_16k(wav, sr), dtype=np.float32))[None]
    f0, periodicity = torchcrepe.predict(
        x, NEURAL_SAMPLE_RATE, hop_length=NEURAL_HOP, fmin=cfg.f0_min, fmax=cfg.f0_max, model=capacity,
        decoder=_crepe_decoder, return_periodicity=True, batch_size=512, device=_torch_device(),
        pad=True)
    periodicity = torchcrepe.filter.median(periodicity, CREPE_MEDIAN_WIDTH)
    f0 = torch.where(periodicity < CREPE_PERIODICITY_THRESHOLD, torch.zeros_like(f0), f0)
    f0 = f0[0].cpu().numpy()
    return np.arange(f0.size) * NEURAL_HOP / NEURAL_SAMPLE_RATE, f0


@functools.lru_cache(maxsize=1)
def _fcpe_model():
    torchfcpe = _import("torchfcpe", "fcpe")
    return torchfcpe.spawn_bundled_infer_model(device=_torch_device())


def _fcpe(wav: np.ndarray, sr: int, cfg: PreprocessConfig):
    import torch
    model = _fcpe_model()
    x = torch.from_numpy(np.ascontiguousarray(_to_16k(wav, sr), dtype=np.float32))[None, :, None]
    f0 = model.infer(x, sr=NEURAL_SAMPLE_RATE, decoder_mode="local_argmax", threshold=FCPE_THRESHOLD,
                     f0_min=cfg.f0_min, f0_max=cfg.f0_max, interp_uv=False)
    f0 = f0[0, :, 0].cpu().numpy()
    f0 = np.where(f0 >= cfg.f0_min, f0, 0.0)
    return (np.arange(f0.size) * NEURAL_HOP + NEURAL_HOP / 2) / NEURAL_SAMPLE_RATE, f0


_EXTRACTORS = {
    "parselmouth": _parselmouth,
    "dio": functools.partial(_world, method="dio"),
    "harvest": functools.partial(_world, method="harvest"),
    "pyin": _pyin,
    "crepe_full": functools.partial(_crepe, capacity="full"),
    "crepe_tiny": functools.partial(_crepe, capacity="tiny"),
    "fcpe": _fcpe,
}
_PACKAGES = {"crepe_full": "torchcrepe", "crepe_tiny": "torchcrepe", "fcpe": "torchfcpe"}


def uses_torch_model(cfg: PreprocessConfig) -> bool:
    """True for the neural trackers (crepe_*, fcpe), which run a torch model on CUDA when available
    (worker processes must then be spawned, not forked)."""
    return cfg.f0_extractor in _PACKAGES


def check_f0_extractor(cfg: PreprocessConfig) -> None:
    """Fail early when ``cfg.f0_extractor`` cannot run here.

    Raises: F0ExtractorUnavailable (torchcrepe/torchfcpe not importable), ValueError (unknown name).
    """
    if cfg.f0_extractor not in _EXTRACTORS:
        raise ValueError(f"unknown preprocess.f0_extractor {cfg.f0_extractor!r}; "
                         f"known: {', '.join(_EXTRACTORS)}")
    if cfg.f0_extractor in _PACKAGES:
        _import(_PACKAGES[cfg.f0_extractor], cfg.f0_extractor)


def extract_f0(wav: np.ndarray, sample_rate: int, cfg: PreprocessConfig, n_frames: int) -> np.ndarray:
    """F0 of one utterance on its mel frames.

    Args:
        wav: (samples,) float waveform at ``sample_rate`` Hz (normally cfg.sample_rate).
        sample_rate: Hz.
        cfg: the ``preprocess`` config (f0_extractor, f0_min, f0_max, hop_size).
        n_frames: T, the number of mel frames (``processors.mel.n_mel_frames``); the mel frames are
            those of ``cfg.hop_size`` at ``sample_rate``.
    Returns: (n_frames,) float32 F0 in Hz, 0 where unvoiced.
    Raises:
        F0ExtractorUnavailable: crepe/fcpe without an importable torchcrepe/torchfcpe.
        F0Error: a signal the tracker cannot analyse.
    """
    check_f0_extractor(cfg)
    wav = np.asarray(wav, dtype=np.float32)
    times, f0 = _EXTRACTORS[cfg.f0_extractor](wav, sample_rate, cfg)
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64), nan=0.0)
    return to_mel_frames(times, f0, mel_frame_times(n_frames, cfg.hop_size, sample_rate))
