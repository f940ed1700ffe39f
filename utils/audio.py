"""Audio in and out: decode any common format to float32 mono at a requested rate, and write
16-bit PCM without clipping. Waveforms are 1-D float32 numpy arrays in [-1, 1], rates in Hz."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from utils.io import WriteError, atomic_write, check_writable

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file (AUDIO_EXTENSIONS, any case) below ``folder``, recursively, sorted."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


def load_audio(path: str | Path, sample_rate: int | None = None) -> np.ndarray:
    """Decode ``path`` (wav/flac/ogg with soundfile; mp3 and others through librosa/audioread),
    downmix to mono and resample to ``sample_rate`` (soxr, high quality) when given.

    Returns: float32 array of shape (samples,).
    Raises: AudioError if the file cannot be decoded, is empty, or holds NaN/inf samples.
    """
    path = Path(path)
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wav = wav.mean(axis=1)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        try:
            import librosa
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wav, sr = librosa.load(str(path), sr=None, mono=True)
        except Exception as e2:  # audioread raises many unrelated types
            raise AudioError(f"{path}: cannot decode audio ({e}; {e2})") from None
    if wav.size == 0:
        raise AudioError(f"{path}: empty audio")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if sample_rate is not None and sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


def check_output_file(path: str | Path) -> Path:
    """``path`` if a file can be written there: it is not a folder, no existing parent of it is a
    file and its nearest existing folder is writable (checked before any conversion work, so a
    bad output path costs nothing; no folder is created).

    Raises: AudioError naming the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a folder; give an output file name such as "
                         f"{path / 'out.wav'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AudioError(f"{path}: cannot be written, {parent} is a file, not a folder")
            break
    try:
        check_writable(path)
    except WriteError as e:
        raise AudioError(str(e)) from None
    return path


def save_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Atomically write ``wav`` as 16-bit PCM. A peak above 1 is scaled down to 0.999 (never
    clipped).

    Raises: AudioError (nothing written) if ``wav`` holds NaN or inf samples, or ``path`` is not
        writable as a file (:func:`check_output_file`); utils.io.WriteError (one line: the path
        and the free space; any earlier file there kept) when the write itself fails, e.g. on a
        full disk.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if not np.all(np.isfinite(wav)):
        bad = int(np.count_nonzero(~np.isfinite(wav)))
        raise AudioError(f"{path}: not written, {bad} of {wav.size} samples are NaN or inf")
    check_output_file(path)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak > 1.0:
        wav = wav * (0.999 / peak)
    # Encoded in memory, then written as bytes: a full disk is then an OSError with its errno
    # (libsndfile itself says only "System error").
    data = io.BytesIO()
    sf.write(data, wav, sample_rate, subtype="PCM_16", format="WAV")
    atomic_write(path, lambda tmp: tmp.write_bytes(data.getbuffer()))
