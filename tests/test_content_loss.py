"""The mel-to-Whisper map, the content-consistency loss, Whisper's layer choice and the content
settings record (issue 27)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from content_fixtures import noise, pcfg_for, save_whisper, tiny_whisper
from processors.content.whisper import WhisperExtractor, encoder_features
from processors.content.whisper_mel import WhisperMel
from processors.mel import mel_spectrogram

SR = 22050
DEMO_BANDS = dict(sample_rate=SR, n_mel=80, fmin=0.0, fmax=8000.0)


def _whisper_logmel(wav: np.ndarray) -> torch.Tensor:
    import soxr
    import whisper
    return whisper.log_mel_spectrogram(torch.from_numpy(
        soxr.resample(wav, SR, 16000).astype(np.float32)))


def _mapped(wav: np.ndarray) -> torch.Tensor:
    pcfg = pcfg_for(**DEMO_BANDS)
    mel = mel_spectrogram(wav, pcfg)[None]
    out, inside = WhisperMel(pcfg)(mel, torch.ones(1, mel.shape[-1], dtype=torch.bool))
    assert bool(inside.all())
    return out[0]


def test_the_map_matches_whisper_for_noise_and_a_tone():
    rng = np.random.default_rng(0)
    white = (rng.standard_normal(SR * 4) * 0.1).astype(np.float32)
    ours, ref = _mapped(white), _whisper_logmel(white)
    n = min(ours.shape[-1], ref.shape[-1])
    assert abs(ours.shape[-1] - ref.shape[-1]) <= 1
    per_band = (ours[:, 5:n - 5] - ref[:, 5:n - 5]).mean(1)      # the calibration's target
    assert float(per_band.abs().mean()) < 0.05 and float(per_band.abs().max()) < 0.25
    t = np.arange(SR * 2) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ours, ref = _mapped(tone), _whisper_logmel(tone)
    band = int(ref[:, 50].argmax())
    assert int(ours[:, 50].argmax()) == band
    assert float(ours[band, 50]) == pytest.approx(float(ref[band, 50]), abs=0.1)


def test_the_map_pads_like_whisper_and_refuses_other_bands():
    pcfg = pcfg_for(**DEMO_BANDS)
    mapper = WhisperMel(pcfg)
    a = mel_spectrogram(noise(1.0, 1) * 3, pcfg)
    b = mel_spectrogram(noise(0.5, 2) * 3, pcfg)
    batch = torch.full((2, 80, a.shape[-1]), -11.5)
    batch[0], batch[1, :, :b.shape[-1]] = a, b
    mask = torch.zeros(2, a.shape[-1], dtype=torch.bool)
    mask[0], mask[1, :b.shape[-1]] = True, True
    out, inside = mapper(batch, mask)
    alone, _ = mapper(b[None], torch.ones(1, b.shape[-1], dtype=torch.bool))
    m = alone.shape[-1]
    assert int(inside[1].sum()) in (m, m + 1)
    torch.testing.assert_close(out[1, :, :m - 1], alone[0, :, :m - 1])
    floor = out[1, :, inside[1]].max() - 2.0                      # (max - 8 + 4) / 4 - (max + 4) / 4
    torch.testing.assert_close(out[1, :, ~inside[1]], torch.full_like(out[1, :, ~inside[1]], float(floor)))
    with pytest.raises(ValueError, match="Whisper's mel bands"):
        WhisperMel(pcfg_for(sample_rate=SR, n_mel=100, fmin=0.0, fmax=8000.0))


def _loss_config(tmp_path, **train):
    from utils.config import config_from_dict
    path = save_whisper(tiny_whisper(), tmp_path / "w.pt")
    return config_from_dict({
        "preprocess": {**DEMO_BANDS, "content_features": ["whisper"]},
        "model": {"comosvc": {"output_dim": 80}},
        "train": {"content_loss": {"weight": 1.0, "whisper_path": str(path), **train}}})


def test_content_loss_is_zero_on_the_real_mel_and_trains_only_the_prediction(tmp_path):
    from modules.losses.content import ContentConsistencyLoss

    cfg = _loss_config(tmp_path)
    loss_fn = ContentConsistencyLoss(cfg)
    pcfg = cfg.preprocess
    log_mels = [mel_spectrogram(noise(1.2, s) * 3, pcfg) for s in (3, 4)]
    lo = torch.stack([m.min(1).values for m in log_mels]) - 0.1
    hi = torch.stack([m.max(1).values for m in log_mels]) + 0.1
    mel = torch.stack([2 * (m - lo[i, :, None]) / (hi[i, :, None] - lo[i, :, None]) - 1
                       for i, m in enumerate(log_mels)])
    batch = {"mel": mel, "mel_min": lo, "mel_max": hi,
             "mask": torch.ones(2, mel.shape[-1], dtype=torch.bool)}
    assert float(loss_fn(mel, batch)) < 1e-5
    pred = mel.flip(-1).clone().requires_grad_(True)               # other content, same spectrum
    loss = loss_fn(pred, batch)
    assert float(loss.detach()) > 0.01
    loss.backward()
    assert float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss_fn.parameters())
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_trainer_adds_the_content_loss_and_keeps_whisper_out_of_checkpoints(tmp_path):
    from models.base.checkpoint import load_checkpoint
    from models.svc.comosvc.trainer import ComoSVCTrainer
    from synthetic_processed import write_processed_dir
    from utils.config import load_config
    import json

    from utils.paths import PROJECT_ROOT
    write_processed_dir(tmp_path / "processed", 80, {"whisper": 8}, 256, SR,
                        [40, 25, 60, 33, 50, 45], 2)
    whisper_file = save_whisper(tiny_whisper(), tmp_path / "w.pt")
    from synthetic_processed import DATASET
    (tmp_path / "config.json").write_text(json.dumps({
        "base_config": str(PROJECT_ROOT / "config" / "comosvc.json"),
        "dataset": [DATASET], "log_dir": str(tmp_path / "logs"),
        "preprocess": {"processed_dir": str(tmp_path / "processed"), **DEMO_BANDS,
                       "content_features": ["whisper"]},
        "model": {"condition_encoder": {"whisper_dim": 8, "singer_table_size": 4},
                  "comosvc": {"input_dim": 16, "output_dim": 80, "n_layers": 1,
                              "filter_channels": 16, "n_res_blocks": 2, "residual_channels": 16}},
        "train": {"batch_size": 2, "max_frames": 32, "max_steps": 2, "log_every_steps": 1,
                  "valid_every_steps": 1000, "save_every_steps": 2, "dataloader_workers": 0,
                  "valid_samples": 0,
                  "content_loss": {"weight": 0.5, "whisper_path": str(whisper_file)}},
        "vocoder": {"type": "griffin_lim"}}))
    cfg = load_config(tmp_path / "config.json")
    trainer = ComoSVCTrainer(cfg, "cl")
    batch = next(iter(trainer.train_loader))
    out = trainer.loss_module(batch)
    assert 0 < float(out["content_loss"]) <= 2
    parts = (cfg.train.edm_loss_weight * out["edm_loss"] + cfg.train.prior_loss_weight
             * out["prior_loss"] + cfg.train.ssim_loss_weight * out["ssim_loss"])
    torch.testing.assert_close(out["loss"], parts + 0.5 * out["content_loss"])
    trainer.train()
    ckpt = load_checkpoint(tmp_path / "logs" / "cl" / "checkpoint" / "step-00000002.pt")
    assert not any("content_loss" in k or k.startswith("encoder.blocks") for k in ckpt["model"])


def test_whisper_layer_picks_a_block_and_is_checked():
    model = tiny_whisper()
    wav = noise(1.0, 5)
    final = WhisperExtractor(model.encoder, pcfg_for(), "cpu").encode_short(wav)
    first = WhisperExtractor(model.encoder, pcfg_for(whisper_layer=1), "cpu").encode_short(wav)
    assert final.shape == first.shape
    assert np.abs(final - first).max() > 0.1
    import whisper
    mel = whisper.log_mel_spectrogram(torch.from_numpy(wav))[None]
    import torch.nn.functional as F
    enc = model.encoder
    with torch.no_grad():
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
        x = enc.blocks[0](x + enc.positional_embedding[:x.shape[1]])
    np.testing.assert_allclose(first, x[0, :len(first)].numpy(), atol=1e-5)
    with torch.no_grad():
        padded = whisper.pad_or_trim(mel, 3000)       # layer 0 is the encoder's own output
        torch.testing.assert_close(encoder_features(enc, padded, 0), model.encoder(padded))
    with pytest.raises(ValueError, match="whisper_layer = 3: this encoder has 2 blocks"):
        WhisperExtractor(model.encoder, pcfg_for(whisper_layer=3), "cpu")


def test_changed_content_settings_recompute_the_features(tmp_path):
    from processors.content.stage import SETTINGS_FILE, extract_content_for_dataset
    from utils.config import config_from_dict
    from utils.io import save_npy
    import soundfile as sf

    path = save_whisper(tiny_whisper(), tmp_path / "w.pt")
    ds = tmp_path / "ds"
    wav_file = tmp_path / "a.wav"
    sf.write(wav_file, noise(1.0, 6), 16000)
    save_npy(ds / "mels" / "a.npy", np.zeros((16, 60), np.float32))
    utts = [{"Uid": "a", "Path": str(wav_file)}]

    def run(layer):
        cfg = config_from_dict({"preprocess": {"content_features": ["whisper"], "n_mel": 16,
                                               "whisper_path": str(path), "whisper_layer": layer},
                                "model": {"condition_encoder": {"whisper_dim": 32},
                                          "comosvc": {"output_dim": 16}}})
        extract_content_for_dataset(cfg, ds, utts)
        return np.load(ds / "whisper" / "a.npy")

    final = run(0)
    assert (ds / SETTINGS_FILE).is_file()
    np.testing.assert_array_equal(run(0), final)                    # unchanged: kept
    first = run(1)
    assert first.shape == final.shape and np.abs(first - final).max() > 0.1
