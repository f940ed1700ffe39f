"""A synthetic stage 1 output (the processed_dir contract layout) for trainer tests and benchmarks:
random but internally consistent features of a few utterances of two singers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.io import save_json, save_npy

DATASET = "synth"
SINGERS = ("alto", "tenor")


def write_processed_dir(root: Path, n_mel: int, content_dims: dict[str, int], hop_size: int,
                        sample_rate: int, frames: list[int], n_test: int = 2,
                        seed: int = 0, audio: bool = False) -> dict:
    """Write ``root/singers.json`` and ``root/synth/...`` for utterances of ``frames`` lengths
    (the last ``n_test`` form the test split; singers alternate).

    Mel bin k of frame t is a smooth function of the frame's F0 plus noise, so a model can learn it.
    With ``audio``, ``audios/<Uid>.npy`` holds a sine at each frame's F0 (noise where unvoiced).
    Returns: the statistics dict written to statistics.json.
    """
    rng = np.random.default_rng(seed)
    d = root / DATASET
    entries, mels, energies, f0s = [], [], [], {s: [] for s in SINGERS}
    for i, n in enumerate(frames):
        singer = SINGERS[i % len(SINGERS)]
        uid = f"{singer}_{i:03d}"
        base = 220.0 if singer == "alto" else 140.0
        f0 = base * 2 ** (np.sin(np.arange(n) / 7.0 + i) / 6.0)
        uv = rng.random(n) < 0.15
        f0 = np.where(uv, 0.0, f0).astype(np.float32)
        k = np.arange(n_mel)[:, None]
        mel = (-6.0 + 3.0 * np.cos(k / n_mel * np.pi * (1 + f0[None, :] / 200.0))
               + 0.1 * rng.standard_normal((n_mel, n))).astype(np.float32)
        energy = np.exp(mel).sum(0).astype(np.float32)
        save_npy(d / "mels" / f"{uid}.npy", mel)
        save_npy(d / "pitches" / f"{uid}.npy", f0)
        save_npy(d / "uvs" / f"{uid}.npy", uv)
        save_npy(d / "energys" / f"{uid}.npy", energy)
        if audio:
            f = np.repeat(f0, hop_size)
            wave = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sample_rate) * (f > 0)
            wave += 0.01 * rng.standard_normal(wave.size)
            save_npy(d / "audios" / f"{uid}.npy", wave.astype(np.float32))
        for name, dim in content_dims.items():
            save_npy(d / name / f"{uid}.npy", rng.standard_normal((n, dim)).astype(np.float32))
        entries.append({"Dataset": DATASET, "Singer": singer, "Song": f"song{i}", "Uid": uid,
                        "Path": f"/nowhere/{uid}.wav", "Duration": n * hop_size / sample_rate})
        mels.append(mel)
        energies.append(energy)
        f0s[singer].append(f0[~uv])
    save_json(root / "singers.json", {f"{DATASET}_{s}": j for j, s in enumerate(SINGERS)})
    save_json(d / "train.json", entries[:len(entries) - n_test])
    save_json(d / "test.json", entries[len(entries) - n_test:])
    all_mel = np.concatenate(mels, axis=1)
    log_e = np.log(np.concatenate(energies))
    stats = {"mel_min": all_mel.min(1).tolist(), "mel_max": all_mel.max(1).tolist(),
             "log_energy_min": float(log_e.min()), "log_energy_max": float(log_e.max()),
             "singers": {}}
    for s, parts in f0s.items():
        v = np.concatenate(parts)
        stats["singers"][f"{DATASET}_{s}"] = {
            "f0_mean": float(v.mean()), "f0_std": float(v.std()), "f0_median": float(np.median(v)),
            "f0_min": float(v.min()), "f0_max": float(v.max()), "n_voiced_frames": int(v.size)}
    save_json(d / "statistics.json", stats)
    return stats


def tiny_config(root: Path, frames: list[int] | None = None, overrides: list[str] = (), n_test: int = 2):
    """Write a synthetic processed_dir under ``root/processed`` (unless present) and return a tiny
    ComoSVC config (16 mels, 8-d whisper, 2 singers, hidden 16) over it, logging to ``root/logs``."""
    import json

    from utils.config import load_config
    from utils.paths import PROJECT_ROOT

    frames = frames or [40, 25, 60, 33, 50, 45, 30, 38]
    if not (root / "processed" / "singers.json").exists():
        write_processed_dir(root / "processed", 16, {"whisper": 8}, 256, 22050, frames, n_test)
    cfg = {
        "base_config": str(PROJECT_ROOT / "config" / "comosvc.json"),
        "dataset": [DATASET], "log_dir": str(root / "logs"),
        "preprocess": {"processed_dir": str(root / "processed"), "n_mel": 16, "sample_rate": 22050,
                       "content_features": ["whisper"]},
        "model": {"condition_encoder": {"whisper_dim": 8, "singer_table_size": 4},
                  "comosvc": {"input_dim": 16, "output_dim": 16, "n_layers": 1,
                              "filter_channels": 16, "n_res_blocks": 2, "residual_channels": 16,
                              "n_timesteps": 8}},
        "train": {"batch_size": 2, "max_frames": 32, "max_steps": 4, "log_every_steps": 1,
                  "valid_every_steps": 1000, "save_every_steps": 2, "keep_last": 2,
                  "dataloader_workers": 0, "valid_samples": 1},
        "inference": {"comosvc": {"inference_steps": 2}},
        "vocoder": {"type": "griffin_lim"},
    }
    path = root / "config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return load_config(path, list(overrides))


def tiny_vits_config(root: Path, frames: list[int] | None = None, overrides: list[str] = (),
                     n_test: int = 2):
    """As :func:`tiny_config`, with waveforms, for a tiny VitsSVC (hidden 16, latent 8, decoder
    upsampling 16 x 16 from 32 channels, 4-frame training windows)."""
    import json

    from utils.config import load_config
    from utils.paths import PROJECT_ROOT

    frames = frames or [40, 25, 60, 33, 50, 45, 30, 38]
    if not (root / "processed" / "singers.json").exists():
        write_processed_dir(root / "processed", 16, {"whisper": 8}, 256, 22050, frames, n_test,
                            audio=True)
    cfg = {
        "base_config": str(PROJECT_ROOT / "config" / "vitssvc.json"),
        "dataset": [DATASET], "log_dir": str(root / "logs"),
        "preprocess": {"processed_dir": str(root / "processed"), "n_mel": 16, "sample_rate": 22050,
                       "hop_size": 256, "n_fft": 512, "win_size": 512, "fmax": 11025,
                       "content_features": ["whisper"]},
        "model": {"condition_encoder": {"whisper_dim": 8, "singer_table_size": 4},
                  "vits": {"inter_channels": 8, "hidden_channels": 16, "filter_channels": 16,
                           "n_layers": 1, "n_layers_q": 2, "n_flows": 2, "n_flow_layer": 2,
                           "gin_channels": 8, "upsample_rates": [16, 16],
                           "upsample_kernel_sizes": [32, 32], "upsample_initial_channel": 32,
                           "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]],
                           "segment_size": 1024, "discriminator_channels": 16}},
        "train": {"batch_size": 2, "max_frames": 32, "max_steps": 4, "log_every_steps": 1,
                  "valid_every_steps": 1000, "save_every_steps": 2, "keep_last": 2,
                  "dataloader_workers": 0, "valid_samples": 1},
        "vocoder": {"type": "griffin_lim"},
    }
    path = root / "vits_config.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return load_config(path, list(overrides))
