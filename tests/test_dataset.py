"""Stage 2 data: normalised aligned crops, collate/padding, length-grouped batches, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.base.dataset import (DataError, LengthGroupedBatchSampler, SVCDataset, collate,
                                 denormalize_mel, load_singers, load_statistics, normalize_mel)
from tests.synthetic_processed import DATASET, tiny_config

FRAMES = [40, 25, 60, 33, 50, 45, 30, 38]


@pytest.fixture()
def cfg(tmp_path):
    return tiny_config(tmp_path, FRAMES)


def _dataset(cfg, split="train", random_crop=True):
    return SVCDataset(cfg, split, random_crop, load_singers(cfg), load_statistics(cfg))


def _raw(cfg, uid, folder):
    from utils.paths import resolve_path
    return np.load(resolve_path(cfg.preprocess.processed_dir) / DATASET / folder / f"{uid}.npy")


def _crop_start(raw_energy, energy):
    starts = [s for s in range(len(raw_energy) - len(energy) + 1)
              if np.array_equal(raw_energy[s:s + len(energy)], energy)]
    assert len(starts) == 1
    return starts[0]


def test_examples_are_normalised_crops_aligned_across_features(cfg):
    ds = _dataset(cfg)
    stats = load_statistics(cfg)[DATASET]
    lo, hi = np.asarray(stats["mel_min"], np.float32), np.asarray(stats["mel_max"], np.float32)
    assert len(ds) == len(FRAMES) - 2
    for i, entry in enumerate(ds.entries):
        item = ds[i]
        n = FRAMES[i]
        t = min(n, cfg.train.max_frames)
        assert item["mel"].shape == (16, t) and item["whisper"].shape == (t, 8)
        s = _crop_start(_raw(cfg, entry["Uid"], "energys"), item["energy"])
        raw_mel = _raw(cfg, entry["Uid"], "mels")[:, s:s + t]
        expected = 2 * (raw_mel - lo[:, None]) / (hi - lo)[:, None] - 1
        np.testing.assert_allclose(item["mel"], expected, rtol=1e-5, atol=1e-5)
        assert item["mel"].min() >= -1 - 1e-5 and item["mel"].max() <= 1 + 1e-5
        np.testing.assert_array_equal(item["f0"], _raw(cfg, entry["Uid"], "pitches")[s:s + t])
        np.testing.assert_array_equal(item["uv"], _raw(cfg, entry["Uid"], "uvs")[s:s + t])
        np.testing.assert_array_equal(item["whisper"], _raw(cfg, entry["Uid"], "whisper")[s:s + t])
        assert item["singer"] == load_singers(cfg)[f"{DATASET}_{entry['Singer']}"]


def test_denormalize_inverts_normalize():
    rng = np.random.default_rng(1)
    mel = rng.normal(-5, 2, (16, 20)).astype(np.float32)
    lo, hi = mel.min(1), mel.max(1)
    back = denormalize_mel(torch.from_numpy(normalize_mel(mel, lo, hi)), torch.from_numpy(lo),
                           torch.from_numpy(hi))
    np.testing.assert_allclose(back.numpy(), mel, rtol=1e-5, atol=1e-5)


def test_crops_depend_only_on_seed_epoch_and_index(cfg):
    a, b = _dataset(cfg), _dataset(cfg)
    long_one = FRAMES.index(60)
    for ds in (a, b):
        ds.set_epoch(3)
    np.testing.assert_array_equal(a[long_one]["energy"], b[long_one]["energy"])
    starts = set()
    raw = _raw(cfg, a.entries[long_one]["Uid"], "energys")
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(_crop_start(raw, a[long_one]["energy"]))
    assert len(starts) > 1
    valid = _dataset(cfg, "train", random_crop=False)
    assert _crop_start(raw, valid[long_one]["energy"]) == (60 - 32) // 2


def test_collate_pads_with_zeros_and_masks(cfg):
    ds = _dataset(cfg)
    items = [ds[1], ds[2]]  # 25 frames and a 32-frame crop
    batch = collate(items)
    assert batch["mel"].shape == (2, 16, 32) and batch["whisper"].shape == (2, 32, 8)
    assert batch["mask"].dtype == torch.bool and batch["uv"].dtype == torch.bool
    assert batch["singer"].dtype == torch.long and batch["f0"].shape == (2, 32)
    assert batch["mask"].sum(1).tolist() == [25, 32]
    for key in ("mel", "f0", "energy", "whisper"):
        padded = batch[key][0, :, 25:] if key == "mel" else batch[key][0, 25:]
        assert torch.count_nonzero(padded) == 0
    assert not batch["uv"][0, 25:].any()
    np.testing.assert_array_equal(batch["energy"][0, :25].numpy(), items[0]["energy"])


def test_batch_sampler_covers_each_index_once_groups_by_length_and_shards():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, 200).tolist()
    s = LengthGroupedBatchSampler(lengths, 8, seed=5)
    s.set_epoch(2)
    epoch2 = list(s)
    assert sorted(i for b in epoch2 for i in b) == list(range(200))
    assert epoch2 == list(s)  # deterministic
    s.set_epoch(3)
    assert list(s) != epoch2
    padding = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in epoch2)
    perm = rng.permutation(200)
    random_batches = [perm[i:i + 8] for i in range(0, 200, 8)]
    random_padding = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b)
                         for b in random_batches)
    assert padding < 0.2 * random_padding
    s.set_epoch(2, start=5)
    assert list(s) == epoch2[5:] and len(s) == len(epoch2) - 5
    r0 = LengthGroupedBatchSampler(lengths[:-4], 8, seed=5, num_replicas=2, rank=0)
    r1 = LengthGroupedBatchSampler(lengths[:-4], 8, seed=5, num_replicas=2, rank=1)
    b0, b1 = list(r0), list(r1)  # 196 utterances: 25 batches, 24 used
    assert len(b0) == len(b1) == 12
    assert not {i for b in b0 for i in b} & {i for b in b1 for i in b}


def test_wrong_content_size_names_file_and_key(tmp_path):
    cfg = tiny_config(tmp_path, FRAMES, ["model.condition_encoder.whisper_dim=12"])
    with pytest.raises(DataError, match=r"whisper.*whisper_dim = 12"):
        _dataset(cfg)


def test_missing_or_inconsistent_stage1_output_is_a_clear_error(tmp_path, cfg):
    root = tmp_path / "processed" / DATASET
    (root / "test.json").unlink()
    with pytest.raises(DataError, match=r"test split not found: .*test\.json.*stage 1"):
        _dataset(cfg, "test")
    entries = json.loads((root / "train.json").read_text())
    np.save(root / "pitches" / f"{entries[0]['Uid']}.npy", np.zeros(7, np.float32))
    with pytest.raises(DataError, match=r"pitches.*7 frames, but the mel has 40"):
        _dataset(cfg)
    entries[0]["Singer"] = "bass"
    (root / "train.json").write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"singer 'synth_bass'.*singers\.json"):
        _dataset(cfg)
    with pytest.raises(DataError, match="singer_table_size = 1"):
        load_singers(tiny_config(tmp_path, FRAMES, ["model.condition_encoder.singer_table_size=1"]))
