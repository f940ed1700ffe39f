"""Feature retrieval (models/base/retrieval.py) and singer mixes (models/base/singer_mix.py): the
index's exact neighbours and RVC's 1/d^2 average on hand-made sets, the blend and protect, the
k-means reduction, building and the refusal of stale / foreign / corrupted indexes, and conversion
with both through the converter, the realtime path and the command lines, for DiffComoSVC (the tiny
random-weight experiment of tests/inference_fixtures.py) and VitsSVC (a tiny random-weight one
over tests/synthetic_processed.py's stage 1 output)."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from models.base.retrieval import (MANIFEST, RetrievalIndexError, blend, flat_index,
                                   neighbour_average, reduce_vectors)
from models.base.singer_mix import SingerMixError, file_label, mix_f0_median, parse_singer_mix
from tests.inference_fixtures import (MEDIANS, SINGERS, SR, write_conversion_setup,
                                      write_experiment, write_training_features)


# --- the maths on hand-made sets ----------------------------------------------------------------

def test_index_returns_the_exact_neighbours_and_rvcs_weighted_average():
    vectors = np.array([[0, 0], [1, 0], [0, 2], [3, 3], [10, 10]], dtype=np.float32)
    index = flat_index(vectors)
    squared, ids = index.search(np.array([[0.9, 0.1], [2.5, 2.5]], dtype=np.float32), 3)
    np.testing.assert_array_equal(ids, [[1, 0, 2], [3, 2, 1]])
    np.testing.assert_allclose(squared, [[0.02, 0.82, 4.42], [0.5, 6.5, 8.5]], rtol=1e-5)
    # k = 2: weights 1/s^2 of s = 0.02 and 0.82, normalised
    w = np.array([1 / 0.02 ** 2, 1 / 0.82 ** 2])
    expected = (w[0] * vectors[1] + w[1] * vectors[0]) / w.sum()
    got = neighbour_average(index, vectors, np.array([[0.9, 0.1]], np.float32), k=2)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    # an exact match dominates (no division by zero); k above the set size is capped
    exact = neighbour_average(index, vectors, np.array([[3, 3]], np.float32), k=50)
    np.testing.assert_allclose(exact[0], [3, 3], atol=1e-6)


def test_blend_and_protect_follow_rvc():
    source = np.zeros((3, 2), np.float32)
    retrieved = np.ones((3, 2), np.float32)
    unvoiced = np.array([False, True, True])
    out = blend(source, retrieved, unvoiced, 0.75, 0.33)
    np.testing.assert_allclose(out[:, 0], [0.75, 0.75 * 0.33, 0.75 * 0.33], rtol=1e-6)
    np.testing.assert_allclose(blend(source, retrieved, unvoiced, 0.75, 0.5)[:, 0], 0.75)  # off
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    assert np.array_equal(blend(x, x[::-1].copy(), np.ones(50, bool), 0.0, 0.2), x)   # bit for bit


def test_kmeans_reduction_above_the_limit():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], np.float32)
    points = (centres[rng.integers(0, 5, 1000)] + 0.1 * rng.standard_normal((1000, 2))).astype(np.float32)
    reduced = reduce_vectors(points, max_vectors=5, seed=1)
    assert reduced.shape == (5, 2) and reduced.dtype == np.float32
    # converged k-means: each centroid is the mean of the points nearest to it
    nearest = np.argmin(((points[:, None] - reduced[None]) ** 2).sum(-1), axis=1)
    for c in range(5):
        np.testing.assert_allclose(reduced[c], points[nearest == c].mean(0), atol=1e-2)
    np.testing.assert_array_equal(reduce_vectors(points[:5], max_vectors=5), points[:5])


def test_singer_mix_parsing_weights_and_autoshift_target():
    known = ["A", "B", "C"]
    mix = parse_singer_mix("A:0.2, B:0.6", known)
    assert mix.names == ("B", "A") and mix.weights == pytest.approx((0.75, 0.25))
    assert mix.primary == "B" and not mix.single
    assert parse_singer_mix("A:0.4", known).single and parse_singer_mix("A", known).weights == (1.0,)
    assert parse_singer_mix("A,C", known).weights == (0.5, 0.5)
    with pytest.raises(SingerMixError, match=r"unknown target singers 'X', 'Y'; this experiment "
                                             r"knows: A, B, C"):
        parse_singer_mix("X:0.5,A:0.2,Y:1", known)
    for bad in ("A:0", "A:-1", "A:x", "A:nan"):
        with pytest.raises(SingerMixError, match="must be a number above 0"):
            parse_singer_mix(bad, known)
    with pytest.raises(SingerMixError, match="named twice"):
        parse_singer_mix("A:1,A:2", known)
    medians = {"A": 220.0, "B": 440.0}
    assert mix_f0_median(parse_singer_mix("A:1,B:1", known), medians) == pytest.approx(
        math.sqrt(220.0 * 440.0))                       # halfway on the semitone scale
    assert mix_f0_median(parse_singer_mix("A", known), medians) == 220.0
    assert file_label("A:0.7, B:0.3") == "A=0.7+B=0.3" and file_label("A") == "A"


def test_mixed_embeddings_are_weighted_rows_and_one_singer_is_the_plain_lookup():
    from modules.singer_embedding import MIX_KEY, embed_singers
    torch.manual_seed(0)
    table = torch.nn.Embedding(4, 8)
    singer = torch.tensor([2, 2])
    one_hot = torch.zeros(2, 4)
    one_hot[:, 2] = 1.0
    plain = embed_singers(table, {"singer": singer})
    assert torch.equal(embed_singers(table, {"singer": singer, MIX_KEY: one_hot}), plain)
    mix = torch.tensor([[0.7, 0.0, 0.3, 0.0]]).repeat(2, 1)
    expected = 0.7 * table.weight[0] + 0.3 * table.weight[2]
    torch.testing.assert_close(embed_singers(table, {"singer": singer, MIX_KEY: mix})[0], expected)


# --- DiffComoSVC: build, refuse, convert ---------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_data):
    from bins.index import build
    root = tmp_path_factory.mktemp("retrieval")
    clip = write_conversion_setup(root, demo_data)
    write_experiment(root / "student", root, clip, student=True)
    write_training_features(root / "processed")
    assert build(root / "teacher", root / "processed") == 0
    return root, clip


def _converter(root, exp="teacher", *overrides):
    from models.svc.registry import load_converter
    return load_converter(root / exp, "cpu", overrides=list(overrides))


def test_built_index_holds_each_singers_frames(setup):
    root, _ = setup
    manifest = json.loads((root / "teacher" / "index" / MANIFEST).read_text())
    assert manifest["singers"] == SINGERS
    assert {s: e["whisper"]["frames"] for s, e in manifest["entries"].items()} == {
        "demo_A": 80, "demo_B": 40}
    assert manifest["content_settings"]["whisper"]["path"].endswith("whisper.pt")
    conv = _converter(root, "teacher", "inference.index_rate=0.5")
    got = conv.retrieval.retrieve("demo_B", "whisper", np.full((3, 16), -1.0, np.float32), 8)
    assert np.abs(got + 1.0).max() < 0.2          # demo_B's frames, not demo_A's


def test_stale_foreign_corrupted_or_missing_indexes_are_refused(setup, tmp_path):
    import shutil
    from models.base.retrieval import RetrievalIndex
    root, _ = setup
    folder = tmp_path / "index"
    shutil.copytree(root / "teacher" / "index", folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    settings, singers = manifest["content_settings"], manifest["singers"]
    RetrievalIndex.load(folder, settings, singers)
    stale = {"whisper": {**settings["whisper"], "layer": 3}}
    with pytest.raises(RetrievalIndexError, match=r"manifest.json: stale index, built with") as e:
        RetrievalIndex.load(folder, stale, singers)
    assert "\n" not in str(e.value) and "cantor index" in str(e.value)
    with pytest.raises(RetrievalIndexError, match="foreign index"):
        RetrievalIndex.load(folder, settings, {**singers, "demo_C": 2})
    file = folder / manifest["entries"]["demo_A"]["whisper"]["file"]
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    file.write_bytes(bytes(data))
    with pytest.raises(RetrievalIndexError, match=r"demo_A.whisper.faiss: checksum mismatch"):
        RetrievalIndex.load(folder, settings, singers)
    with pytest.raises(RetrievalIndexError, match="no feature-retrieval index for this model"):
        _converter(root, "student", "inference.index_rate=0.5")   # the student has none yet
    # stage 1 features recomputed with other settings: the build refuses them
    from bins.index import build
    processed = tmp_path / "processed"
    shutil.copytree(root / "processed", processed)
    (processed / "gtsinger_demo" / "content_settings.json").write_text(json.dumps(stale))
    assert build(root / "teacher", processed) == 2


def test_index_rate_zero_is_the_plain_output_bit_for_bit(setup):
    root, clip = setup
    plain = _converter(root).convert(clip, "demo_A", 0).wav
    conv = _converter(root, "teacher", "inference.index_rate=0.75")
    blended = conv.convert(clip, "demo_A", 0).wav
    assert not np.array_equal(blended, plain)
    conv.cfg.inference.index_rate = 0.0               # the blend path itself, at rate 0
    assert np.array_equal(conv.convert(clip, "demo_A", 0).wav, plain)


def test_a_mix_of_one_singer_is_that_singer_and_a_mix_differs(setup):
    root, clip = setup
    conv = _converter(root, "teacher", "inference.index_rate=0.5")
    alone = conv.convert(clip, "demo_A", 0).wav
    for text in ("demo_A:1", "demo_A:0.3", " demo_A "):
        assert np.array_equal(conv.convert(clip, text, 0).wav, alone)
    mixed = conv.convert(clip, "demo_A:0.5,demo_B:0.5", "autoshift")
    assert not np.array_equal(mixed.wav, alone) and np.all(np.isfinite(mixed.wav))
    from processors.f0 import extract_f0
    from processors.pitch_shift import autoshift_semitones
    f0 = extract_f0(clip, SR, conv.cfg.preprocess, len(clip) // conv.cfg.preprocess.hop_size + 1)
    target = math.sqrt(MEDIANS["demo_A"] * MEDIANS["demo_B"])
    assert mixed.key_shift == autoshift_semitones(f0, target, True)


def test_streaming_with_the_index_and_a_mix(setup):
    from models.base.stream_runner import stream_file
    from models.base.streaming import StreamingConverter
    root, clip = setup
    plain = stream_file(StreamingConverter(_converter(root), "demo_A"), clip)[0]
    conv = _converter(root, "teacher", "inference.index_rate=0.75")
    stream = StreamingConverter(conv, "demo_A")
    calls = []
    search = conv.retrieval.retrieve
    conv.retrieval.retrieve = lambda s, f, q, k: calls.append(len(q)) or search(s, f, q, k)
    out = stream_file(stream, clip)[0]
    assert out.shape == plain.shape and not np.array_equal(out, plain)
    g = stream.geometry
    assert calls[0] == g.window_frames and set(calls[1:]) == {g.tail_frames}   # rolling cache
    conv.cfg.inference.index_rate = 0.0
    assert np.array_equal(stream_file(StreamingConverter(conv, "demo_A"), clip)[0], plain)
    one = stream_file(StreamingConverter(_converter(root), "demo_A:1"), clip)[0]
    assert np.array_equal(one, plain)


def test_command_lines_take_the_index_and_the_mix(setup, tmp_path, capsys):
    from bins import infer
    from bins.svc import inference
    root, clip = setup
    song = root / "songs" / "alto" / "take.wav"
    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    out = tmp_path / "mix.wav"
    args = parser.parse_args([str(song), "-m", str(root / "teacher"), "-s", "demo_A:0.7,demo_B:0.3",
                              "--index-rate", "0.5", "--protect", "0.2", "-o", str(out)])
    assert infer.run(args) == 0, capsys.readouterr().err
    assert sf.info(str(out)).frames == len(clip)
    args = parser.parse_args([str(song), "-m", str(root / "teacher"), "-s", "demo_A:0.5,nobody:1",
                              "-o", str(out)])
    assert infer.run(args) == 2
    assert "unknown target singer 'nobody'; this experiment knows: demo_A, demo_B" in \
        capsys.readouterr().err
    args = parser.parse_args([str(song), "-m", str(root / "student"), "-s", "demo_A",
                              "--index-rate", "0.5", "-o", str(out)])
    assert infer.run(args) == 2
    assert "no feature-retrieval index" in capsys.readouterr().err
    parser = argparse.ArgumentParser()
    inference.add_arguments(parser)
    args = parser.parse_args(["--infer_expt_dir", str(root / "teacher"), "--infer_output_dir",
                              str(tmp_path / "stage3"), "--infer_source_audio_dir",
                              str(root / "songs" / "alto"), "--infer_target_speaker",
                              "demo_B:1,demo_A:1", "--infer_index_rate", "0.3"])
    assert inference.run(args) == 0, capsys.readouterr().err
    assert (tmp_path / "stage3" / "take" / "take_demo_B=1+demo_A=1.wav").is_file()


# --- VitsSVC -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vits(tmp_path_factory, setup):
    """A random-weight tiny VitsSVC experiment over a synthetic stage 1 output with 16-d whisper
    features (the random Whisper of ``setup``), with its index."""
    from bins.index import build
    from models.base.checkpoint import FORMAT, save_checkpoint
    from models.base.dataset import load_singers, load_statistics
    from models.svc.vits.model import VitsSVC
    from tests.synthetic_processed import write_processed_dir, tiny_vits_config
    from utils.config import config_to_dict
    root, _ = setup
    vroot = tmp_path_factory.mktemp("vits_retrieval")
    write_processed_dir(vroot / "processed", 16, {"whisper": 16}, 256, 22050,
                        [40, 25, 60, 33, 50, 45], 2, audio=True)
    cfg = tiny_vits_config(vroot, overrides=["model.condition_encoder.whisper_dim=16",
                                             f"preprocess.whisper_path={root / 'whisper.pt'}"])
    torch.manual_seed(0)
    payload = {"format": FORMAT, "student": False, "model": VitsSVC(cfg).state_dict(),
               "config": config_to_dict(cfg), "singers": load_singers(cfg),
               "statistics": load_statistics(cfg), "step": 1, "epoch": 1}
    save_checkpoint(vroot / "exp" / "checkpoint", 1, payload, keep_last=0)
    assert build(vroot / "exp") == 0
    return vroot / "exp"


def test_vits_converts_with_the_index_and_the_mix(vits, setup):
    from models.svc.registry import load_converter
    _, clip = setup
    clip = clip[:SR]

    def convert(conv, singer):  # the NSF source draws from torch's global generator
        torch.manual_seed(0)
        return conv.convert(clip, singer, 0).wav

    plain = load_converter(vits, "cpu")
    assert type(plain).__name__ == "VitsConverter"
    alone = convert(plain, "synth_alto")
    assert np.array_equal(convert(plain, "synth_alto:1"), alone)
    assert not np.array_equal(convert(plain, "synth_alto:0.5,synth_tenor:0.5"), alone)
    conv = load_converter(vits, "cpu", overrides=["inference.index_rate=1.0"])
    assert not np.array_equal(convert(conv, "synth_alto"), alone)
    conv.cfg.inference.index_rate = 0.0
    assert np.array_equal(convert(conv, "synth_alto"), alone)
