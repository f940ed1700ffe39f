"""A running ``cantor webui`` for the web UI tests (test_webui.py, test_webui_browser.py): tiny
random-weight teacher and student experiments in the real checkpoint, Whisper and HiFi-GAN formats
(built with inference_fixtures.py's helpers) in a models folder; a data folder with real demo takes, a
broken file and symlinks that lead out of it; the app served on a free port of 127.0.0.1 with a
small upload limit."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.inference_fixtures import CLIP, SR, write_experiment, write_hifigan, write_whisper
from utils.audio import load_audio, save_wav

MAX_UPLOAD_MB = 4.0
TAKES = ("ZH-Alto-1/zh01/control.flac", "ZH-Tenor-1/zh07/control.flac")
LONG_TAKES = ("IT-Soprano-1/it03/falsetto.flac", "IT-Soprano-1/it03/mixed.flac")


@dataclass
class RunningUI:
    url: str
    ui: object
    app: object
    models: Path
    data: Path
    weights: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_folders(root: Path, demo: Path) -> tuple[Path, Path, Path]:
    """(models, data, weights) folders under ``root``: experiments tiny/teacher and tiny/student;
    data/songs/<singer>_<song>.wav (two demo takes at the model's rate) plus broken.wav,
    data/long.wav (30 s of demo singing), and two symlinks leading outside: data/escape -> the
    weights folder, data/songs_bad/passwd.wav -> /etc/passwd."""
    models, data, weights = root / "models", root / "data", root / "weights"
    for d in (models, data, weights):
        d.mkdir(parents=True, exist_ok=True)
    write_whisper(weights / "whisper.pt")
    write_hifigan(weights / "hifigan")
    clip = load_audio(demo / CLIP, SR)[:3 * SR]
    write_experiment(models / "tiny" / "teacher", weights, clip, student=False)
    write_experiment(models / "tiny" / "student", weights, clip, student=True)
    for take in TAKES:
        name = "_".join(Path(take).parts[:2])
        save_wav(data / "songs" / f"{name}.wav", load_audio(demo / take, SR)[:4 * SR], SR)
    (data / "songs" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    long = np.concatenate([load_audio(demo / t, SR) for t in LONG_TAKES])[:30 * SR]
    save_wav(data / "long.wav", long, SR)
    os.symlink(weights, data / "escape")
    (data / "songs_bad").mkdir()
    os.symlink("/etc/passwd", data / "songs_bad" / "passwd.wav")
    return models, data, weights


def start(root: Path, demo: Path) -> RunningUI:
    """Build the folders and serve the UI (not blocking); close with ``.app.close()``."""
    from cantor.webui.app import launch
    from cantor.webui.handlers import WebUI
    models, data, weights = build_folders(root, demo)
    ui = WebUI(models, data, "cpu")
    port = free_port()
    app = launch(ui, "127.0.0.1", port, MAX_UPLOAD_MB, block=False)
    return RunningUI(f"http://127.0.0.1:{port}/", ui, app, models, data, weights)
