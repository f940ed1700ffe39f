"""Stage 1 over shards: K/N runs plus the merge write what one unsharded run writes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bins.svc import preprocess as preprocess_cli
from preprocessors.common import MetadataError
from processors.shards import parse_shard, shard_of
from processors.stage1 import run_stage1
from tests.test_stage1 import corpus, make_cfg  # noqa: F401 (the corpus fixture)

METADATA = ("train.json", "test.json", "skipped.tsv")


def test_sharded_stage1_equals_the_unsharded_run(tmp_path, corpus):  # noqa: F811
    single = make_cfg(tmp_path / "single", corpus, preprocess={"num_workers": 1})
    run_stage1(single)
    sharded = make_cfg(tmp_path / "sharded", corpus, preprocess={"num_workers": 1})
    out = tmp_path / "sharded" / "processed" / "synth"
    parts = [run_stage1(sharded, shard=(k, 3))["synth"] for k in (2, 0, 1)]  # any order
    assert sorted(p["utterances"] for p in parts) == [3, 3, 3]  # 9 files, every third
    assert sum(p["skipped"] for p in parts) == 5
    assert not (out / "train.json").exists() and len(list((out / "shards").iterdir())) == 3

    with pytest.raises(MetadataError, match=r"synth: shards 0/4, 1/4, 2/4, 3/4 are not done"):
        run_stage1(sharded, merge_shards=4)
    summary = run_stage1(sharded, merge_shards=3)
    assert summary["synth"]["train"] == 2 and summary["synth"]["skipped"] == 5
    assert not (out / "shards").exists()

    ref = tmp_path / "single" / "processed"
    for name in METADATA:
        assert (out / name).read_bytes() == (ref / "synth" / name).read_bytes(), name
    assert (out.parent / "singers.json").read_bytes() == (ref / "singers.json").read_bytes()
    a = json.loads((out / "statistics.json").read_text())
    b = json.loads((ref / "synth" / "statistics.json").read_text())
    np.testing.assert_allclose(a["mel_min"], b["mel_min"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["mel_max"], b["mel_max"], rtol=0, atol=1e-6)
    assert a["log_energy_min"] == pytest.approx(b["log_energy_min"], abs=1e-6)
    assert a["log_energy_max"] == pytest.approx(b["log_energy_max"], abs=1e-6)
    assert a["singers"].keys() == b["singers"].keys()
    for singer, s in a["singers"].items():
        for key, value in s.items():
            assert value == pytest.approx(b["singers"][singer][key], abs=1e-6), (singer, key)


def test_shard_specs_stale_results_and_changed_settings(tmp_path, corpus):  # noqa: F811
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="0 <= K < N"):
            parse_shard(bad)
    assert [u["Uid"] for u in shard_of([{"Uid": str(i)} for i in range(5)], 1, 2)] == ["1", "3"]
    with pytest.raises(SystemExit):
        preprocess_cli.add_arguments(parser := __import__("argparse").ArgumentParser())
        parser.parse_args(["--config", "c", "--shard", "2/2"])

    cfg = make_cfg(tmp_path, corpus, preprocess={"num_workers": 1})
    out = tmp_path / "processed" / "synth"
    run_stage1(cfg, shard=(0, 2))
    run_stage1(cfg, shard=(1, 3))  # a shard of another split
    (out / "shards" / "1-of-2.json").write_text((out / "shards" / "1-of-3.json").read_text())
    with pytest.raises(MetadataError, match="1-of-2.json covers other utterances than shard 1/2"):
        run_stage1(cfg, merge_shards=2)
    with pytest.raises(ValueError, match="one shard or merges"):
        run_stage1(cfg, shard=(0, 2), merge_shards=2)
    dio = make_cfg(tmp_path, corpus, preprocess={"num_workers": 1, "f0_extractor": "dio"})
    with pytest.raises(MetadataError, match="other acoustic settings .*f0_extractor"):
        run_stage1(dio, shard=(0, 2))
    assert (out / "mels").is_dir()  # a shard never deletes features others may be writing
