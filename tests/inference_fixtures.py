"""A tiny experiment in the real formats for the conversion tests (test_inference.py,
test_bad_inputs.py): random-weight Whisper in openai's format, random-weight HiFi-GAN with its
config.json, and a random-weight ComoSVC checkpoint (teacher) or export (student) whose statistics
come from a real demo clip; a small training split for building a retrieval index."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.base.checkpoint import FORMAT, save_checkpoint
from utils.audio import load_audio, save_wav
from utils.config import config_to_dict, load_config
from utils.paths import PROJECT_ROOT

SR = 22050  # the demo recipe's rate
HOP = 256
CLIP = "ZH-Alto-1/zh01/control.flac"
SINGERS = {"demo_A": 0, "demo_B": 1}
MEDIANS = {"demo_A": 220.0, "demo_B": 400.0}


def write_whisper(path: Path) -> None:
    """A random-weight Whisper (16-d, 1 layer) in openai's checkpoint format."""
    import whisper.model as wm
    dims = wm.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                              n_audio_layer=1, n_vocab=64, n_text_ctx=8, n_text_state=16,
                              n_text_head=2, n_text_layer=1)
    torch.manual_seed(1)
    torch.save({"dims": dims.__dict__, "model_state_dict": wm.Whisper(dims).state_dict()}, path)


def write_hifigan(folder: Path) -> Path:
    """A random-weight tiny HiFi-GAN generator with its config.json; returns the generator file."""
    from models.vocoders.hifigan import HiFiGANGenerator
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(2)
    topology = {"upsample_initial_channel": 16, "resblock_kernel_sizes": [3],
                "resblock_dilation_sizes": [[1, 3]]}
    torch.save({"generator": HiFiGANGenerator(80, **topology).state_dict()}, folder / "generator.pth")
    (folder / "config.json").write_text(json.dumps({
        "sampling_rate": SR, "num_mels": 80, "hop_size": HOP, "n_fft": 1024, "win_size": 1024,
        "fmin": 0, "fmax": 8000, "resblock": "1", **topology}))
    return folder / "generator.pth"


def conversion_test_config(root: Path, *extra: str):
    """The demo config with a tiny model reading ``root``'s Whisper and HiFi-GAN, short chunks and
    one sampler step, plus ``extra`` overrides."""
    return load_config(PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json", [
        "model.comosvc.input_dim=32", "model.condition_encoder.singer_table_size=4",
        "model.condition_encoder.whisper_dim=16", "model.comosvc.n_layers=1",
        "model.comosvc.filter_channels=64", "model.comosvc.n_res_blocks=2",
        "model.comosvc.residual_channels=32", "preprocess.content_features=['whisper']",
        f"preprocess.whisper_path={root / 'whisper.pt'}", "vocoder.type=hifigan",
        f"vocoder.path={root / 'hifigan' / 'generator.pth'}", "vocoder.backend=torch",
        "vocoder.precision=fp32", "inference.chunk_seconds=1.2",
        "inference.chunk_overlap=0.2", "inference.comosvc.inference_steps=1", *extra])


def write_experiment(exp: Path, root: Path, clip: np.ndarray, student: bool) -> None:
    """A checkpoint (teacher) or export (student) of a random-weight tiny ComoSVC, with statistics
    computed from ``clip``."""
    from models.svc.comosvc.model import ComoSVC
    from processors.features import acoustic_features
    cfg = conversion_test_config(root, f"model.comosvc.distill={str(student).lower()}")
    feats = acoustic_features(clip, cfg.preprocess)
    log_e = np.log(feats["energy"])
    stats = {"mel_min": feats["mel"].min(1).tolist(), "mel_max": feats["mel"].max(1).tolist(),
             "log_energy_min": float(log_e.min()), "log_energy_max": float(log_e.max()),
             "singers": {k: {"f0_median": v, "f0_min": v / 2, "f0_max": v * 2}
                         for k, v in MEDIANS.items()}}
    torch.manual_seed(3)
    model = ComoSVC(cfg)
    model.set_energy_range(float(log_e.min()), float(log_e.max()))
    payload = {"format": FORMAT, "student": student, "model": model.export_state_dict(),
               "config": config_to_dict(cfg), "singers": SINGERS, "statistics": {"demo": stats},
               "step": 20, "epoch": 1}
    save_checkpoint(exp / ("export" if student else "checkpoint"), 20, payload, keep_last=0)


def write_conversion_setup(root: Path, demo_data: Path, seconds: float = 3.0) -> np.ndarray:
    """Whisper, HiFi-GAN, a teacher experiment ``root/teacher`` and ``root/songs/alto/take.wav``
    (the first ``seconds`` of the demo clip at SR); returns that clip."""
    write_whisper(root / "whisper.pt")
    write_hifigan(root / "hifigan")
    clip = load_audio(demo_data / CLIP, SR)[:int(seconds * SR)]
    write_experiment(root / "teacher", root, clip, student=False)
    save_wav(root / "songs" / "alto" / "take.wav", clip, SR)
    return clip


def write_training_features(processed, dim: int = 16) -> None:
    """A stage 1 training split under ``processed`` for the index tests (test_retrieval.py,
    test_webui.py): the experiment config's dataset folder (gtsinger_demo) with utterances of
    the fixture's two singers (Dataset "demo", so their keys are demo_A and demo_B), whose
    ``dim``-wide whisper features sit around +1 (demo_A) and -1 (demo_B)."""
    rng = np.random.default_rng(0)
    d = processed / "gtsinger_demo"
    entries = []
    for i, (singer, centre) in enumerate((("A", 1.0), ("B", -1.0), ("A", 1.0))):
        uid = f"{singer}_{i}"
        (d / "whisper").mkdir(parents=True, exist_ok=True)
        np.save(d / "whisper" / f"{uid}.npy",
                (centre + 0.1 * rng.standard_normal((40, dim))).astype(np.float32))
        entries.append({"Dataset": "demo", "Singer": singer, "Uid": uid, "Path": "/nowhere.wav",
                        "Duration": 0.5})
    (d / "train.json").write_text(json.dumps(entries))
