"""Content features: alignment, windows, Whisper / ContentVec loaders and converters, stage 1 writer.

Every model here is a tiny random-weight network saved in the real on-disk format (openai-whisper
.pt, a fairseq-style ContentVec dict, a CTranslate2 model.bin written byte by byte) and read back
through the real loading code; converted weights are checked against a forward pass of the original.
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from cantor.cli import main as cantor
from processors.content import check_content_dims, load_content_extractors
from processors.content.align import align_to_mel
from processors.content.contentvec import ContentVecExtractor, load_contentvec
from processors.content.stage import extract_content_for_dataset
from processors.content.weights import MissingWeightsError
from processors.content.whisper import WhisperExtractor
from processors.content.windows import split_windows, stitch
from utils.schema import CantorConfig

from tests.content_fixtures import SR, noise, pcfg_for, save_whisper, tiny_whisper

# ----------------------------------------------------------------------------- alignment, windows

def test_align_equals_amphion_repeat_15_average_8():
    # Amphion's convention: 20 ms frame j spans [20j, 20j + 20) ms, i.e. centre 10 ms + 20j.
    feats = np.random.default_rng(0).standard_normal((50, 3))
    n = 50 * 15 // 8
    amphion = np.repeat(feats, 15, axis=0)[:n * 8].reshape(n, 8, 3).mean(axis=1)
    ours = align_to_mel(feats, 0.010, 0.020, n, hop_size=256, sample_rate=24000)
    np.testing.assert_allclose(ours, amphion, atol=1e-6)


def test_align_gives_exact_length_and_extends_edges():
    feats = np.arange(10, dtype=np.float64)[:, None] * [1.0, -2.0]
    for n in (1, 7, 19, 40):  # fewer, about as many and more mel frames than the source covers
        out = align_to_mel(feats, 0.0, 0.02, n, hop_size=256, sample_rate=22050)
        assert out.shape == (n, 2) and out.dtype == np.float32
    out = align_to_mel(feats, 0.0, 0.02, 40, hop_size=256, sample_rate=22050)
    assert np.all(out[-5:, 0] == 9.0)  # beyond the last source frame: its value
    assert np.all(np.diff(out[:, 0]) >= 0)  # a ramp stays monotonic
    # 10 ms mel frames on 20 ms features: mel frame 2k+1 lies in source frame k+1 (centred 20(k+1) ms)
    out = align_to_mel(feats, 0.0, 0.02, 12, hop_size=160, sample_rate=16000)
    np.testing.assert_allclose(out[1:12:2, 0], np.arange(1, 7), atol=1e-6)
    with pytest.raises(ValueError):
        align_to_mel(np.zeros((0, 2)), 0.0, 0.02, 5, 256, 24000)


def test_windows_split_and_crossfade():
    assert split_windows(20 * SR, SR) == [(0, 20 * SR)]
    assert split_windows(70 * SR, SR) == [(0, 30 * SR), (25 * SR, 55 * SR), (50 * SR, 70 * SR)]
    # identical content in every window -> stitched result is that content, everywhere
    full = np.random.default_rng(1).standard_normal((3500, 4)).astype(np.float32)
    pieces = [(0, full[0:1500]), (1250, full[1250:2750]), (2500, full[2500:3500])]
    np.testing.assert_allclose(stitch(pieces), full, atol=1e-6)
    # different content: a linear cross-fade from window 1 to window 2 over the overlap
    out = stitch([(0, np.zeros((1500, 1))), (1250, np.ones((1000, 1)))])
    assert out.shape == (2250, 1)
    assert np.all(out[:1250] == 0) and np.all(out[1500:] == 1)
    ramp = out[1250:1500, 0]
    assert np.all(np.diff(ramp) > 0) and 0 < ramp[0] < 0.01 and 0.99 < ramp[-1] < 1


# ----------------------------------------------------------------------------- Whisper

@pytest.fixture(scope="module")
def whisper_ckpt(tmp_path_factory):
    return save_whisper(tiny_whisper(), tmp_path_factory.mktemp("whisper") / "tiny.pt")


def test_whisper_matches_openai_encoder_and_is_batch_invariant(whisper_ckpt):
    import whisper
    pcfg = pcfg_for(whisper_path=str(whisper_ckpt), content_features=["whisper"], content_batch_size=2)
    ex = load_content_extractors(pcfg, "cpu")["whisper"]
    assert ex.dim == 32 and ex.n_mels == 80
    a, b, c = noise(3.3, 1), noise(7.0, 2), noise(1.1, 3)
    # reference: openai-whisper's own model (full Whisper), 30 s padded input, frames covering a
    ref_model = whisper.load_model(str(whisper_ckpt), device="cpu")
    with torch.no_grad():
        ref = ref_model.embed_audio(whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a)))[None])
    n_a = -(-len(a) // 320)
    np.testing.assert_allclose(ex.encode_windows([a])[0], ref[0, :n_a].numpy(), atol=1e-4)
    t = [len(x) * 24000 // SR // 256 for x in (a, b, c)]
    together = ex.extract([a, b, c], t)
    assert [f.shape for f in together] == [(ti, 32) for ti in t]
    np.testing.assert_allclose(together[0], align_to_mel(ref[0, :n_a].numpy(), 0.0, 0.02, t[0], 256, 24000),
                               atol=1e-4)
    for x, ti, f in zip((a, b, c), t, together):
        np.testing.assert_allclose(ex.extract([x], [ti])[0], f, atol=1e-4)


def test_whisper_longer_than_30s_has_features_everywhere(whisper_ckpt):
    # 16 kHz mels with hop 320: mel frame i spans whisper frames i and i+1 (half each)
    pcfg = pcfg_for(whisper_path=str(whisper_ckpt), sample_rate=SR, hop_size=320)
    ex = WhisperExtractor.from_config(pcfg, "cpu")
    long = noise(65.0, 4)
    t = len(long) // 320
    out = ex.extract([long], [t])[0]
    assert out.shape == (t, 32) and np.all(np.isfinite(out))
    assert np.abs(out[-500:]).mean() > 0.1 and out[-500:].std(axis=0).mean() > 0.01  # not padding
    # before the first overlap (25 s = frame 1250), the first window alone
    first = ex.extract([long[:30 * SR]], [1500])[0]
    np.testing.assert_allclose(out[:1249], first[:1249], atol=1e-4)
    # after the second window ends (55 s), the last window (starting at 50 s) alone
    last = ex.extract([long[50 * SR:]], [t - 2500])[0]
    np.testing.assert_allclose(out[2751:], last[251:], atol=1e-4)


def test_whisper_128_mel_bins_large_v3_style(tmp_path):
    path = save_whisper(tiny_whisper(n_mels=128, seed=1), tmp_path / "large-v3-like.pt")
    ex = WhisperExtractor.from_config(pcfg_for(whisper_path=str(path)), "cpu")
    assert ex.n_mels == 128
    assert ex.extract([noise(2.0, 5)], [187])[0].shape == (187, 32)


def test_missing_weights_name_file_key_and_remedy(tmp_path):
    pcfg = pcfg_for(whisper_path=str(tmp_path / "medium.pt"), contentvec_path=str(tmp_path / "cv.pt"))
    with pytest.raises(MissingWeightsError) as e:
        load_content_extractors(pcfg, "cpu")
    msg = str(e.value)
    assert str(tmp_path / "medium.pt") in msg and "preprocess.whisper_path" in msg
    assert "convert-whisper-ct2" in msg and "_MODELS" in msg
    with pytest.raises(MissingWeightsError) as e:
        load_content_extractors(dataclasses.replace(pcfg, content_features=["contentvec"]), "cpu")
    assert "preprocess.contentvec_path" in str(e.value) and "checkpoint_best_legacy_500" in str(e.value)
    with pytest.raises(ValueError, match="unknown"):
        load_content_extractors(dataclasses.replace(pcfg, content_features=["hubert"]), "cpu")


# ----------------------------------------------------------------------------- ContentVec

KERNELS, STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
CONV, HID, HEADS, LAYERS, FFN, POS_K, POS_G, PROJ = 16, 32, 2, 2, 48, 16, 4, 8


class FakeFairseqDictionary:
    """Stands for fairseq.data.dictionary.Dictionary, pickled in real fairseq checkpoints."""

    def __init__(self):
        self.symbols = ["<s>", "<pad>", "0", "1"]


def fairseq_contentvec_state(seed: int = 0, hid: int = HID) -> dict[str, torch.Tensor]:
    """Random fairseq HuBERT-base-style weights of width ``hid``."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3, mean=0.0):
        return torch.randn(*shape, generator=g) * scale + mean

    sd = {}
    for i, k in enumerate(KERNELS):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = r(CONV, 1 if i == 0 else CONV, k, scale=0.5)
    sd["feature_extractor.conv_layers.0.2.weight"] = r(CONV, mean=1.0)
    sd["feature_extractor.conv_layers.0.2.bias"] = r(CONV)
    sd["layer_norm.weight"], sd["layer_norm.bias"] = r(CONV, mean=1.0), r(CONV)
    sd["post_extract_proj.weight"], sd["post_extract_proj.bias"] = r(hid, CONV), r(hid)
    sd["mask_emb"] = r(hid)
    sd["encoder.pos_conv.0.bias"] = r(hid)
    sd["encoder.pos_conv.0.weight_g"] = r(1, 1, POS_K, mean=1.0)
    sd["encoder.pos_conv.0.weight_v"] = r(hid, hid // POS_G, POS_K)
    sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"] = r(hid, mean=1.0), r(hid)
    for i in range(LAYERS):
        p = f"encoder.layers.{i}."
        for n in ("q", "k", "v", "out"):
            sd[f"{p}self_attn.{n}_proj.weight"], sd[f"{p}self_attn.{n}_proj.bias"] = r(hid, hid), r(hid)
        sd[f"{p}self_attn_layer_norm.weight"], sd[f"{p}self_attn_layer_norm.bias"] = r(hid, mean=1.0), r(hid)
        sd[f"{p}fc1.weight"], sd[f"{p}fc1.bias"] = r(FFN, hid), r(FFN)
        sd[f"{p}fc2.weight"], sd[f"{p}fc2.bias"] = r(hid, FFN), r(hid)
        sd[f"{p}final_layer_norm.weight"], sd[f"{p}final_layer_norm.bias"] = r(hid, mean=1.0), r(hid)
    sd["final_proj.weight"], sd["final_proj.bias"] = r(PROJ, hid), r(PROJ)
    sd["label_embs_concat"] = r(6, PROJ)
    return sd


def fairseq_reference(sd, wav: np.ndarray, final_proj: bool) -> torch.Tensor:
    """fairseq HubertModel.extract_features(output_layer=12) (+ final_proj), written out in torch ops."""
    x = torch.from_numpy(wav)[None, None]
    for i, s in enumerate(STRIDES):
        x = F.conv1d(x, sd[f"feature_extractor.conv_layers.{i}.0.weight"], stride=s)
        if i == 0:
            x = F.group_norm(x, CONV, sd["feature_extractor.conv_layers.0.2.weight"],
                             sd["feature_extractor.conv_layers.0.2.bias"])
        x = F.gelu(x)
    x = F.layer_norm(x.transpose(1, 2), (CONV,), sd["layer_norm.weight"], sd["layer_norm.bias"])
    x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    w = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over dim 2
    pos = F.conv1d(x.transpose(1, 2), w, sd["encoder.pos_conv.0.bias"], padding=POS_K // 2, groups=POS_G)
    x = x + F.gelu(pos[:, :, :-1]).transpose(1, 2)  # SamePad drops the extra frame of an even kernel
    x = F.layer_norm(x, (HID,), sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"])
    for i in range(LAYERS):
        p = f"encoder.layers.{i}."

        def lin(name, t):
            return F.linear(t, sd[f"{p}{name}.weight"], sd[f"{p}{name}.bias"])

        def heads(t):
            return t.view(1, -1, HEADS, HID // HEADS).transpose(1, 2)
        q, k, val = (heads(lin(f"self_attn.{n}_proj", x)) for n in ("q", "k", "v"))
        att = torch.softmax(q @ k.transpose(-1, -2) / (HID // HEADS) ** 0.5, dim=-1) @ val
        x = x + lin("self_attn.out_proj", att.transpose(1, 2).reshape(1, -1, HID))
        x = F.layer_norm(x, (HID,), sd[f"{p}self_attn_layer_norm.weight"], sd[f"{p}self_attn_layer_norm.bias"])
        x = x + lin("fc2", F.gelu(lin("fc1", x)))
        x = F.layer_norm(x, (HID,), sd[f"{p}final_layer_norm.weight"], sd[f"{p}final_layer_norm.bias"])
    if final_proj:
        x = F.linear(x, sd["final_proj.weight"], sd["final_proj.bias"])
    return x[0]


@pytest.fixture(scope="module")
def contentvec_pt(tmp_path_factory):
    path = tmp_path_factory.mktemp("contentvec") / "checkpoint_best_legacy_500.pt"
    args = argparse.Namespace(encoder_attention_heads=HEADS, layer_norm_first=False, encoder_layers=LAYERS)
    torch.save({"args": args, "cfg": None, "model": fairseq_contentvec_state(),
                "task_state": {"dictionaries": [FakeFairseqDictionary()]}, "optimizer_history": []}, path)
    return path


def test_contentvec_fairseq_checkpoint_reproduces_reference(contentvec_pt):
    sd = fairseq_contentvec_state()
    wav = noise(1.3, 7)
    for final_proj, dim in ((True, PROJ), (False, HID)):
        pcfg = pcfg_for(contentvec_path=str(contentvec_pt), contentvec_final_proj=final_proj,
                        content_features=["contentvec"])
        ex = load_content_extractors(pcfg, "cpu")["contentvec"]
        assert ex.dim == dim and ex.samples_per_frame == 320 and ex.min_samples == 400
        got = ex.encode_windows([wav])[0]
        ref = fairseq_reference(sd, wav, final_proj).numpy()
        assert got.shape == ref.shape == ((len(wav) - 400) // 320 + 1, dim)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_contentvec_padding_mask_and_long_input(contentvec_pt):
    ex = ContentVecExtractor.from_config(pcfg_for(contentvec_path=str(contentvec_pt), content_batch_size=4), "cpu")
    short, mid = noise(0.7, 8), noise(2.2, 9)
    batched = ex.encode_windows([short, mid])
    for wav, f in zip((short, mid), batched):
        np.testing.assert_allclose(f, ex.encode_windows([wav])[0], atol=1e-5)
    # a quiet stretch of exact zeros inside the audio is signal, not padding
    gap = np.concatenate([mid[:8000], np.zeros(8000, np.float32), mid[8000:]])
    ref = fairseq_reference(fairseq_contentvec_state(), gap, True).numpy()
    np.testing.assert_allclose(ex.encode_windows([gap, short])[0], ref, atol=1e-4)
    long = noise(61.0, 10)
    t = len(long) * 24000 // SR // 256
    out = ex.extract([long, short], [t, 10])
    assert out[0].shape == (t, PROJ) and out[1].shape == (10, PROJ)
    assert np.all(np.isfinite(out[0])) and out[0][-300:].std(axis=0).mean() > 0.01


def test_convert_contentvec_folder_matches_checkpoint(contentvec_pt, tmp_path):
    out = tmp_path / "hf"
    assert cantor(["convert-contentvec", str(contentvec_pt), str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "final_proj.safetensors").is_file()
    wav = noise(1.0, 11)
    for final_proj in (True, False):
        from_pt = ContentVecExtractor(*load_contentvec(contentvec_pt, final_proj), pcfg_for(), "cpu")
        from_dir = ContentVecExtractor(*load_contentvec(out, final_proj), pcfg_for(), "cpu")
        np.testing.assert_allclose(from_dir.encode_windows([wav])[0], from_pt.encode_windows([wav])[0],
                                   atol=1e-5)
    (out / "final_proj.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="contentvec_final_proj"):
        load_contentvec(out, True)
    assert cantor(["convert-contentvec", str(tmp_path / "absent.pt"), str(tmp_path / "x")]) == 1


# ----------------------------------------------------------------------------- stage 1

def test_stage_writes_aligned_features_and_skips(tmp_path, whisper_ckpt, contentvec_pt):
    cfg = CantorConfig()
    cfg.preprocess = pcfg_for(sample_rate=24000, hop_size=256, content_features=["whisper", "contentvec"],
                              whisper_path=str(whisper_ckpt), contentvec_path=str(contentvec_pt),
                              content_batch_size=2)
    cfg.model.condition_encoder.whisper_dim, cfg.model.condition_encoder.contentvec_dim = 32, PROJ
    ds = tmp_path / "demo"
    (ds / "mels").mkdir(parents=True)
    utts = []
    for i, sec in enumerate((1.5, 2.5, 0.8)):
        sf.write(tmp_path / f"u{i}.wav", noise(sec, 20 + i), 24000)  # written at 24 kHz, read at 16 kHz
        utts.append({"Uid": f"u{i}", "Path": str(tmp_path / f"u{i}.wav"), "Duration": sec})
        np.save(ds / "mels" / f"u{i}.npy", np.zeros((80, int(sec * 24000) // 256), np.float32))
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    utts.append({"Uid": "broken", "Path": str(tmp_path / "broken.wav"), "Duration": 1.0})
    np.save(ds / "mels" / "broken.npy", np.zeros((80, 50), np.float32))
    utts.append({"Uid": "nomel", "Path": str(tmp_path / "u0.wav"), "Duration": 1.5})

    skipped = extract_content_for_dataset(cfg, ds, utts, overwrite=False)
    assert sorted(uid for uid, _ in skipped) == ["broken", "nomel"]
    assert "broken.wav" in dict(skipped)["broken"]
    for i, sec in enumerate((1.5, 2.5, 0.8)):
        t = int(sec * 24000) // 256
        assert np.load(ds / "whisper" / f"u{i}.npy").shape == (t, 32)
        assert np.load(ds / "contentvec" / f"u{i}.npy").shape == (t, PROJ)
    # rerun: valid outputs kept (not rewritten); a wrong-shaped one is redone
    stamp = (ds / "whisper" / "u1.npy").stat().st_mtime_ns
    np.save(ds / "contentvec" / "u2.npy", np.zeros((3, PROJ), np.float32))
    extract_content_for_dataset(cfg, ds, utts[:3], overwrite=False)
    assert (ds / "whisper" / "u1.npy").stat().st_mtime_ns == stamp
    assert np.load(ds / "contentvec" / "u2.npy").shape == (int(0.8 * 24000) // 256, PROJ)
    # the model config must agree with the features
    cfg.model.condition_encoder.whisper_dim = 1024
    with pytest.raises(ValueError, match="whisper_dim"):
        extract_content_for_dataset(cfg, ds, utts[:1], overwrite=True)
    with pytest.raises(ValueError, match="contentvec_dim"):
        check_content_dims(load_content_extractors(cfg.preprocess, "cpu"),
                           dataclasses.replace(cfg.model.condition_encoder, whisper_dim=32, contentvec_dim=256))
