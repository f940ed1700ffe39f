"""A folder of raw recordings -> a custom dataset of training clips (``cantor prepare``).

Input: ``RAW_DIR/<singer>/**/*.{wav,flac,mp3,ogg}``, recordings of any length and sample rate.
Output: ``OUT_DIR/<singer>/<recording>/<n>.wav`` (16-bit mono at ``sample_rate``), each recording
cut at silences by :func:`processors.slicer.slice_audio`; the output is the custom layout
``<singer>/<song>/<utt>`` that stage 1 reads (preprocessors/custom.py), one recording per song.
The recording's name is its path below the singer folder with ``/`` replaced by ``_``.

A file that cannot be read is left out (listed in its singer's summary); the others go on. Re-running
rewrites a recording's clips (its old clips are removed first, so none is left over).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from processors.slicer import SliceSettings, slice_audio
from utils.audio import AudioError, audio_files, load_audio, save_wav

# Below these a singer's data is thin for a model (so-vits-svc-fork and RVC advise minutes of clips).
MIN_CLIPS = 5
MIN_MINUTES = 2.0


@dataclass
class SingerSummary:
    """What :func:`prepare` wrote for one singer: clip count, seconds of audio, failed files."""

    clips: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    @property
    def thin(self) -> bool:
        """Fewer than MIN_CLIPS clips or under MIN_MINUTES minutes."""
        return self.clips < MIN_CLIPS or self.seconds < 60.0 * MIN_MINUTES


def recording_name(path: Path, singer_dir: Path) -> str:
    """``<sub>/<dir>/<take>.flac`` below the singer folder -> ``sub_dir_take``."""
    return "_".join(path.relative_to(singer_dir).with_suffix("").parts)


def prepare(raw_dir: str | Path, out_dir: str | Path, sample_rate: int = 44100,
            settings: SliceSettings = SliceSettings()) -> dict[str, SingerSummary]:
    """Cut every recording of ``raw_dir`` into clips under ``out_dir`` (module docstring).

    Returns: {singer: SingerSummary}, singers in sorted order.
    Raises: ValueError when ``raw_dir`` is not a folder with singer folders holding audio, or for
        inconsistent slicer settings.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    settings.check()
    if not raw_dir.is_dir():
        raise ValueError(f"{raw_dir}: not a folder (expected RAW_DIR/<singer>/<recordings>)")
    if out_dir.resolve() == raw_dir.resolve() or raw_dir.resolve() in out_dir.resolve().parents:
        raise ValueError(f"{out_dir}: the output folder must lie outside {raw_dir}")
    singers = {d.name: audio_files(d) for d in sorted(raw_dir.iterdir())
               if d.is_dir() and not d.name.startswith(".")}
    singers = {name: files for name, files in singers.items() if files}
    if not singers:
        raise ValueError(f"{raw_dir}: no audio files in any <singer> folder (expected "
                         f"RAW_DIR/<singer>/**/*.wav|flac|mp3|ogg)")
    summary: dict[str, SingerSummary] = {}
    jobs = [(singer, f) for singer, files in singers.items() for f in files]
    for singer, path in tqdm(jobs, desc="slicing", unit="file"):
        s = summary.setdefault(singer, SingerSummary())
        try:
            wav = load_audio(path, sample_rate)
        except AudioError as e:
            s.failed.append(str(e))
            continue
        folder = out_dir / singer / recording_name(path, raw_dir / singer)
        if folder.exists():
            shutil.rmtree(folder)
        for n, (a, b) in enumerate(slice_audio(wav, sample_rate, settings)):
            save_wav(folder / f"{n:04d}.wav", wav[a:b], sample_rate)
            s.clips += 1
            s.seconds += (b - a) / sample_rate
    return summary
