"""The work of the Convert and Batch tabs, run as jobs (cantor/webui/jobs.py) on a converter from
:func:`cantor.webui.experiments.load_converter`: progress by converted chunk batch and by file,
cancellation between batches, and per-stage real-time factors."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.base.converter import Timings

from cantor.webui.jobs import Job


@contextlib.contextmanager
def watched(converter, job: Job, on_batch=None, on_file=None):
    """While inside, the converter checks ``job`` for cancellation before every file it reads and
    every batch it synthesises, calling ``on_file()`` / ``on_batch()`` as it goes; its timings
    start from zero. The converter is unchanged afterwards (except its timings)."""
    synthesize, convert_file = converter.synthesize, converter.convert_file

    def checked_synthesize(batch, singer, generator):
        job.check_cancel()
        audio = synthesize(batch, singer, generator)
        if on_batch is not None:
            on_batch()
        return audio

    def checked_convert_file(*args, **kwargs):
        job.check_cancel()
        if on_file is not None:
            on_file()
        return convert_file(*args, **kwargs)

    converter.timings = Timings()
    converter.synthesize, converter.convert_file = checked_synthesize, checked_convert_file
    try:
        yield
    finally:
        del converter.synthesize, converter.convert_file


def expected_batches(seconds: float, converter) -> int:
    """About how many batches a song of ``seconds`` takes (chunks of at most
    inference.chunk_seconds, inference.batch_size at a time), for the progress bar."""
    inf = converter.cfg.inference
    return max(1, math.ceil(math.ceil(seconds / inf.chunk_seconds) / inf.batch_size))


def stage_rtfs(t: Timings) -> dict[str, float]:
    """Real-time factors (seconds of work per second of audio) of ``t``: features, acoustic model,
    vocoder, total."""
    return {stage: getattr(t, stage) / t.audio if t.audio > 0 else float("nan")
            for stage in ("features", "acoustic", "vocoder", "total")}


class SongError(ValueError):
    """A song that could not be converted; the message names it."""


@dataclass
class SongResult:
    """A converted song: ``wav_path`` (16-bit wav), its ``seconds``, ``key_shift`` applied,
    ``rtf`` per stage, the ``figure`` of mels and F0, and the one-line ``summary``."""

    wav_path: Path
    seconds: float
    key_shift: float
    rtf: dict[str, float]
    figure: object
    summary: str


def convert_song(job: Job, converter, source: Path, display_name: str, singer: str,
                 key_shift: float | str, out_path: Path) -> SongResult:
    """Convert one song for the Convert tab into ``out_path`` and draw its figure.

    Raises: as SVCConverter.convert_file, with the message naming the song as ``cantor infer``
    does; Cancelled.
    """
    import soundfile as sf

    from cantor.webui.figures import mel_f0_figure
    from processors.features import acoustic_features
    from utils.audio import load_audio, save_wav

    converter.check_target(singer)
    try:
        seconds = sf.info(str(source)).duration
    except Exception:  # noqa: BLE001 - only the progress estimate needs it; load_audio reports
        seconds = 0.0
    total = expected_batches(seconds, converter) if seconds else 1
    done = [0]

    def on_batch():
        done[0] += 1
        job.report(0.1 + 0.75 * min(done[0] / total, 1.0),
                   f"converted {done[0]} of about {total} batches")

    job.report(0.02, f"features of {display_name}")
    try:
        with watched(converter, job, on_batch):
            result = converter.convert_file(source, singer, key_shift, Path(display_name).stem)
            rtf = stage_rtfs(converter.timings)
    except Exception as e:  # the message names the song, as `cantor infer` prints it
        if display_name in str(e):
            raise
        raise SongError(f"{display_name}: {type(e).__name__}: {e}") from e
    save_wav(out_path, result.wav, result.sample_rate)
    job.report(0.9, "drawing mels and F0")
    pcfg = converter.cfg.preprocess
    src = acoustic_features(load_audio(source, result.sample_rate), pcfg)
    out = acoustic_features(result.wav, pcfg)
    figure = mel_f0_figure(src, out, pcfg.hop_size / pcfg.sample_rate, result.key_shift)
    length = len(result.wav) / result.sample_rate
    summary = (f"{display_name} -> {singer} ({length:.1f} s, key shift {result.key_shift:+g} "
               f"semitones, {converter.describe()}, {converter.device}): real-time factor "
               f"{rtf['total']:.3f} (features {rtf['features']:.3f}, acoustic model "
               f"{rtf['acoustic']:.3f}, vocoder {rtf['vocoder']:.3f})")
    job.report(1.0, summary)
    return SongResult(out_path, length, result.key_shift, rtf, figure, summary)


def convert_batch(job: Job, converter, sources: Sequence[tuple[str, Path]], singers: Sequence[str],
                  key_shift: float | str, output_dir: Path) -> dict:
    """Every source to every singer with models.base.batch_convert.convert_sources (Amphion's
    output layout, a bad file named and skipped), progress by file.

    Returns: {"written": [paths], "failed": [(path, message)], "summary": one line}.
    Raises: UnknownSingerError before anything is converted; Cancelled.
    """
    from models.base.batch_convert import convert_sources, output_path
    for singer in singers:
        converter.check_target(singer)
    n = len(sources) * len(singers)
    started = [0]
    total = Timings()

    def on_file():
        started[0] += 1
        job.report((started[0] - 1) / n, f"file {started[0]} of {n}")

    written, failed = [], []
    for singer in singers:
        with watched(converter, job, on_file=on_file):
            bad = convert_sources(converter, sources, singer, key_shift, output_dir,
                                  overwrite=True)
            for stage in ("features", "acoustic", "vocoder", "audio", "files"):
                setattr(total, stage, getattr(total, stage) + getattr(converter.timings, stage))
        failed += bad
        written += [output_path(output_dir, name, singer) for name, path in sources
                    if all(p != Path(path) for p, _ in bad)]
    summary = (f"converted {len(written)} of {n} files into {output_dir} ({converter.describe()}, "
               f"{converter.device}): real-time factor {stage_rtfs(total)['total']:.3f}")
    if failed:
        summary += f"; {len(failed)} failed"
    job.report(1.0, summary)
    return {"written": written, "failed": failed, "summary": summary}


def folder_sources(sandbox, folder: Path) -> list[tuple[str, Path]]:
    """(name, path) of every audio file below ``folder``, sorted; name = the relative path without
    the extension, folders joined with "_" (stage 3's naming).

    Raises: PathRefused for a file whose real path (a symlink) leaves the sandbox; ValueError for
        a folder without audio or two files that would get the same name.
    """
    from cantor.webui.sandbox import PathRefused
    from utils.audio import AUDIO_EXTENSIONS, audio_files
    files = audio_files(folder)
    if not files:
        raise ValueError(f"no {'/'.join(e[1:] for e in AUDIO_EXTENSIONS)} file below {folder}")
    sources: dict[str, Path] = {}
    for p in files:
        if not sandbox.inside(p):
            raise PathRefused(f"{p} is a symlink leading outside the folders this UI may use "
                              f"(to {p.resolve()}); allowed: {sandbox.describe()}")
        name = "_".join(p.relative_to(folder).with_suffix("").parts)
        if name in sources:
            raise ValueError(f"{sources[name]} and {p} would both be written as {name!r}; rename one")
        sources[name] = p
    return list(sources.items())
