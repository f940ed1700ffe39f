"""so-vits-svc 4.1 generators: the key map round trip on a random-weight G_*.pth written in their
exact on-disk format (tests/sovits_fixtures.py) and a conversion through `cantor infer` with
ContentVec layer-12 (768-d) features."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cantor.cli import main as cantor_main
from models.base.checkpoint import CheckpointError
from models.svc.vits.model import VitsSVC
from models.svc.vits.sovits_format import read_sovits
from tests.sovits_fixtures import sovits_41_config, sovits_41_shapes, write_sovits_41
from tests.test_content import HEADS, LAYERS, FakeFairseqDictionary, fairseq_contentvec_state
from utils.config import config_from_dict


@pytest.fixture(scope="module")
def sovits(tmp_path_factory):
    root = tmp_path_factory.mktemp("sovits")
    pth = write_sovits_41(root / "model")
    cv = root / "checkpoint_best_legacy_500.pt"
    args = argparse.Namespace(encoder_attention_heads=HEADS, layer_norm_first=False,
                              encoder_layers=LAYERS)
    torch.save({"args": args, "cfg": None, "model": fairseq_contentvec_state(hid=768),
                "task_state": {"dictionaries": [FakeFairseqDictionary()]},
                "optimizer_history": []}, cv)
    return pth, cv, root


def test_published_config_gives_the_published_parameter_count():
    shapes = sovits_41_shapes(sovits_41_config())
    assert sum(int(np.prod(s)) for s in shapes.values()) == pytest.approx(52.4e6, rel=1e-3)


def test_key_map_round_trip(sovits):
    pth, _, _ = sovits
    theirs = torch.load(pth, weights_only=True)["model"]
    checkpoint = read_sovits(pth)
    cfg = config_from_dict(checkpoint["config"])
    assert (cfg.preprocess.sample_rate, cfg.preprocess.hop_size, cfg.preprocess.n_fft) == (44100, 512, 2048)
    assert cfg.preprocess.content_features == ["contentvec"] and not cfg.preprocess.contentvec_final_proj
    assert checkpoint["singers"] == {"nyaru": 0, "alto": 1}
    model = VitsSVC(cfg)
    model.load_state_dict(checkpoint["model"], strict=True)
    ours = model.state_dict()
    g, v = theirs["dec.conv_pre.weight_g"], theirs["dec.conv_pre.weight_v"]
    assert torch.allclose(ours["decoder.conv_pre.weight"], g * v / v.flatten(1).norm(dim=1)[:, None, None])
    assert torch.equal(ours["prior.encoder.attention.3.query.weight"],
                       theirs["enc_p.enc_.attn_layers.3.conv_q.weight"][..., 0])
    assert torch.equal(ours["prior.encoder.attention.0.rel_value"],
                       theirs["enc_p.enc_.attn_layers.0.emb_rel_v"][0])
    assert torch.equal(ours["prior.encoder.norm_feed_forward.5.bias"],
                       theirs["enc_p.enc_.norm_layers_2.5.beta"])
    assert torch.equal(ours["flow.flows.3.post.bias"], theirs["flow.flows.6.post.bias"])
    assert torch.equal(ours["prior.voiced_embedding.weight"], theirs["emb_uv.weight"])
    assert torch.equal(ours["decoder.m_source.l_linear.weight"], theirs["dec.m_source.l_linear.weight"])
    mapped = {k for k in theirs if not k.startswith("f0_decoder.")}
    n_folded = sum(k.endswith(".weight_g") for k in mapped)
    assert len(ours) == len(mapped) - n_folded  # every tensor but the F0 predictor, g/v pairs folded


def test_cantor_infer_converts_a_song(sovits, tmp_path):
    pth, cv, _ = sovits
    sr = 44100
    t = np.arange(int(1.2 * sr)) / sr
    song = (0.3 * np.sin(2 * np.pi * 220.0 * 2 ** (np.sin(2 * np.pi * t) / 12) * t)).astype(np.float32)
    src = tmp_path / "song.wav"
    sf.write(src, song, sr)
    out = tmp_path / "out.wav"
    assert cantor_main(["infer", str(src), "-m", str(pth), "-s", "alto", "-o", str(out),
                        "-t", "2", "--set", f"preprocess.contentvec_path={cv}"]) == 0
    wav, rate = sf.read(out)
    assert rate == sr and len(wav) == len(song)
    assert np.isfinite(wav).all() and np.sqrt(np.mean(wav ** 2)) > 1e-4


def test_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"model": {}}, bad / "G_1.pth")
    config = sovits_41_config()
    config["model"]["speech_encoder"] = "vec256l9"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="speech_encoder = 'vec256l9' is not supported"):
        read_sovits(bad / "G_1.pth")
    config["model"]["speech_encoder"] = "vec768l12"
    (bad / "config.json").write_text(json.dumps(config))
    torch.save({"model": {"enc_p.mystery.weight": torch.zeros(1)}}, bad / "G_1.pth")
    with pytest.raises(CheckpointError, match="unknown so-vits-svc 4.1 parameter enc_p.mystery"):
        read_sovits(bad / "G_1.pth")
    with pytest.raises(CheckpointError, match="not a so-vits-svc generator"):
        torch.save([1, 2], bad / "G_1.pth")
        read_sovits(bad / "G_1.pth")
