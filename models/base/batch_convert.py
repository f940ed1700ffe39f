"""Stage 3's batch driver: many source files to one target singer, each written as a 16-bit wav;
one bad file is named and skipped, the others still convert.

Re-running resumes, as stage 1 does: temporaries and stale locks a killed run left in the output
folder are removed first, and a source whose output is already complete (:func:`output_complete`)
is not converted again unless ``overwrite``. While an output is produced its lock file
(utils.io.output_lock) is held; a source whose output another live run holds is skipped with a
warning."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import soundfile as sf
from tqdm.auto import tqdm

from models.base.converter import BrokenModelError, SVCConverter
from utils.audio import check_output_file, save_wav, wav_truncation
from utils.io import WriteError, output_lock, remove_stale_temporaries

log = logging.getLogger(__name__)


def one_line_error(error: Exception, path: str | Path) -> str:
    """``error`` as one line naming ``path`` (prefixed unless the message already names it; the
    exception type is kept for anything but the expected ValueError/OSError kinds)."""
    text = " ".join(str(error).split())
    if str(path) in text:
        return text
    kind = "" if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: "
    return f"{path}: {kind}{text}"


def output_path(output_dir: str | Path, source_name: str, singer: str) -> Path:
    """Amphion's layout: ``<output_dir>/<source name>/<source name>_<target singer>.wav`` (a
    singer mix as :func:`models.base.singer_mix.file_label` writes it)."""
    from models.base.singer_mix import file_label
    return Path(output_dir) / source_name / f"{source_name}_{file_label(singer)}.wav"


def output_complete(out: Path, source: Path, sample_rate: int) -> bool:
    """Whether ``out`` is a whole conversion of ``source``: a mono WAV at ``sample_rate`` Hz, not
    cut short, as long as the source at that rate (within one sample; not compared when the
    source's length cannot be read from its header, e.g. an mp3)."""
    try:
        info = sf.info(str(out))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    if info.samplerate != sample_rate or info.channels != 1 or not info.frames \
            or wav_truncation(out):
        return False
    try:
        src = sf.info(str(source))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return True
    return abs(info.frames - src.frames * sample_rate / src.samplerate) <= 1


def convert_sources(converter: SVCConverter, sources: Sequence[tuple[str, Path]], singer: str,
                    key_shift: float | str, output_dir: str | Path,
                    overwrite: bool = False) -> list[tuple[Path, str]]:
    """Convert every (source name, audio path) to ``singer`` into :func:`output_path` (16-bit),
    with a progress bar and a closing line giving the real-time factor; resumes a killed run (the
    module doc) unless ``overwrite``, which converts every source again.

    A source that fails (unreadable, too short, an output path that cannot be written, checked
    before its conversion, NaN/inf output, ...) is logged on one line with its path and skipped,
    nothing written for it; the others still convert.
    Returns: [(path, error message)] of the failed sources.
    Raises: UnknownSingerError before anything is converted; BrokenModelError (the model's weights,
        not a source) at the first source, nothing written; WriteError (a full disk: every later
        output would fail too) when an output cannot be written, the batch stops there.
    """
    converter.check_target(singer)
    remove_stale_temporaries(output_dir, (".wav",), recursive=True)
    failed: list[tuple[Path, str]] = []
    done = 0
    files_before = converter.timings.files
    for name, path in tqdm(sources, desc=f"converting to {singer}", unit="file"):
        out = output_path(output_dir, name, singer)
        if not overwrite and output_complete(out, Path(path), converter.sample_rate):
            done += 1
            continue
        try:
            check_output_file(out)
            with output_lock(out) as other:
                if other is not None:
                    log.warning("skipped %s: another run (pid %d) is writing %s", path, other, out)
                    continue
                result = converter.convert_file(path, singer, key_shift, name)
                save_wav(out, result.wav, result.sample_rate)
        except (BrokenModelError, WriteError):
            raise
        except Exception as e:  # one bad file (or output path) must not stop the others
            msg = one_line_error(e, path)
            log.error("skipped %s", msg)
            failed.append((Path(path), msg))
            continue
        log.info("%s -> %s (key shift %+.2f semitones)", path, out, result.key_shift)
    if done:
        log.info("%d of %d sources already had a complete output in %s and were not converted "
                 "again (--overwrite redoes them)", done, len(sources), output_dir)
    t = converter.timings
    tqdm.write(f"converted {t.files - files_before} of {len(sources)} files to {singer} "
               f"({converter.describe()}, {converter.device}): {t.summary()}")
    return failed
