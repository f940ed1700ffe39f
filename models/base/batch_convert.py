"""Stage 3's batch driver: many source files to one target singer, each written as a 16-bit wav;
one bad file is named and skipped, the others still convert."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from models.base.converter import BrokenModelError, SVCConverter
from utils.audio import check_output_file, save_wav
from utils.io import WriteError

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
    """Amphion's layout: ``<output_dir>/<source name>/<source name>_<target singer>.wav``."""
    return Path(output_dir) / source_name / f"{source_name}_{singer}.wav"


def convert_sources(converter: SVCConverter, sources: Sequence[tuple[str, Path]], singer: str,
                    key_shift: float | str, output_dir: str | Path) -> list[tuple[Path, str]]:
    """Convert every (source name, audio path) to ``singer`` into :func:`output_path` (16-bit),
    with a progress bar and a closing line giving the real-time factor.

    A source that fails (unreadable, too short, an output path that cannot be written, checked
    before its conversion, NaN/inf output, ...) is logged on one line with its path and skipped,
    nothing written for it; the others still convert.
    Returns: [(path, error message)] of the failed sources.
    Raises: UnknownSingerError before anything is converted; BrokenModelError (the model's weights,
        not a source) at the first source, nothing written; WriteError (a full disk: every later
        output would fail too) when an output cannot be written, the batch stops there.
    """
    converter.check_target(singer)
    failed: list[tuple[Path, str]] = []
    for name, path in tqdm(sources, desc=f"converting to {singer}", unit="file"):
        out = output_path(output_dir, name, singer)
        try:
            check_output_file(out)
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
    t = converter.timings
    tqdm.write(f"converted {t.files} of {len(sources)} files to {singer} "
               f"({converter.describe()}, {converter.device}): {t.summary()}")
    return failed
