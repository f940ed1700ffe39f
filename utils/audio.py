"""Audio in and out: decode any common format to float32 mono at a requested rate, and write
16-bit PCM without clipping. Waveforms are 1-D float32 numpy arrays in [-1, 1], rates in Hz."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from utils.io import WriteError, atomic_write, check_writable

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def audio_files(folder: str | Path) -> list[Path]:
    """Every audio file (AUDIO_EXTENSIONS, any case) below ``folder``, recursively, sorted. An entry
    with an audio extension that is not a file (a folder named ``x.wav``, a broken link) is left
    out with a warning naming it."""
    found = []
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            log.warning("%s: skipped, a folder named like an audio file (the audio files in it are "
                        "still found)", p)
        else:
            log.warning("%s: skipped, not a regular file (a broken link?)", p)
    return found


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


def wav_truncation(path: str | Path) -> tuple[int, int] | None:
    """(frames its header declares, frames present) of a RIFF/WAVE file whose data chunk is cut
    short (a copy or download that stopped); None for a whole WAV, another format, or a header
    without a real size (0 or 0xFFFFFFFF, written by streaming recorders)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while chunk := f.read(8):
                if len(chunk) < 8:
                    return None
                kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if kind == b"fmt ":
                    fmt = f.read(size + size % 2)
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                elif kind == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    present = Path(path).stat().st_size - f.tell()
                    if present >= size:
                        return None
                    return size // block_align, max(present, 0) // block_align
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None
    return None


def load_audio(path: str | Path, sample_rate: int | None = None) -> np.ndarray:
    """Decode ``path`` (wav/flac/ogg with soundfile; mp3 and others through librosa/audioread),
    downmix to mono and resample to ``sample_rate`` (soxr, high quality) when given.

    A WAV shorter than its header says (:func:`wav_truncation`) is read as far as it goes, with a
    warning naming it.

    Returns: float32 array of shape (samples,).
    Raises: AudioError if the file cannot be decoded, is empty, or holds NaN/inf samples.
    """
    path = Path(path)
    cut = wav_truncation(path)
    if cut:
        log.warning("%s: truncated, its header declares %d samples but only %d are present (%.0f "
                    "%%); using what is there", path, cut[0], cut[1], 100 * cut[1] / cut[0])
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
