"""Corpus readers on tiny fake trees of each layout, dataset checks and the global singer table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from preprocessors import custom, m4singer, opencpop, opensinger, svcc, vctk
from preprocessors.common import FIELDS, MetadataError
from preprocessors.metadata import check_datasets, update_singer_table, write_split
from utils.config import config_from_dict

SR = 16000
CLIP_S = 0.4


def clip(path: Path, seconds: float = CLIP_S, fmt: str | None = None) -> Path:
    """A short sine clip at ``path`` (format from the suffix unless ``fmt``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR, format=fmt)
    return path


def check_records(split, dataset: str) -> list[dict]:
    records = split.train + split.test
    for r in records:
        assert tuple(r) == FIELDS
        assert r["Dataset"] == dataset
        assert Path(r["Path"]).is_file()
        assert r["Duration"] == pytest.approx(CLIP_S, abs=0.03)
    assert len({r["Uid"] for r in records}) == len(records)
    train_songs = {(r["Singer"], r["Song"]) for r in split.train}
    assert not train_songs & {(r["Singer"], r["Song"]) for r in split.test}
    return records


def test_m4singer_uses_the_release_test_songs(tmp_path):
    items = ["Alto-2#岁月神偷#0000", "Alto-2#岁月神偷#0001", "Alto-2#小酒窝#0000", "Bass-1#十年#0003"]
    for item in items:
        singer, song, idx = item.split("#")
        clip(tmp_path / f"{singer}#{song}" / f"{idx}.wav")
    (tmp_path / "meta.json").write_text(json.dumps([{"item_name": i, "txt": "x"} for i in items]),
                                        encoding="utf-8")
    split = m4singer.read("m4singer", tmp_path)
    check_records(split, "m4singer")
    assert [r["Uid"] for r in split.test] == ["Alto-2_岁月神偷_0000", "Alto-2_岁月神偷_0001"]
    assert {(r["Singer"], r["Song"]) for r in split.train} == {("Alto-2", "小酒窝"), ("Bass-1", "十年")}


def test_m4singer_malformed_item_name_names_the_file(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps([{"item_name": "Alto-2#no-index"}]))
    with pytest.raises(MetadataError, match="meta.json.*Alto-2#no-index"):
        m4singer.read("m4singer", tmp_path)


def test_opencpop_uses_the_official_lists(tmp_path):
    seg = tmp_path / "segments"
    train_ids, test_ids = ["2001000001", "2001000002", "2002000001"], ["2044000001"]
    for uid in train_ids + test_ids:
        clip(seg / "wavs" / f"{uid}.wav")
    (seg / "train.txt").write_text("".join(f"{u}|啊|a|C4|0.4|0.4|0\n" for u in train_ids), encoding="utf-8")
    (seg / "test.txt").write_text("".join(f"{u}|啊|a|C4|0.4|0.4|0\n" for u in test_ids), encoding="utf-8")
    split = opencpop.read("opencpop", tmp_path)
    check_records(split, "opencpop")
    assert [r["Uid"] for r in split.train] == train_ids
    assert [r["Uid"] for r in split.test] == test_ids
    assert {r["Singer"] for r in split.train + split.test} == {"female1"}
    assert [r["Song"] for r in split.train] == ["2001", "2001", "2002"]


def test_opencpop_missing_list_is_a_clear_error(tmp_path):
    with pytest.raises(MetadataError, match=r"segments/train.txt"):
        opencpop.read("opencpop", tmp_path)


def test_opensinger_singers_and_last_song_held_out(tmp_path):
    clip(tmp_path / "ManRaw" / "0_光年之外" / "0_光年之外_0.wav")
    clip(tmp_path / "ManRaw" / "0_光年之外" / "0_光年之外_1.wav")
    clip(tmp_path / "ManRaw" / "0_大鱼" / "0_大鱼_0.wav")
    clip(tmp_path / "WomanRaw" / "40_can_you_feel" / "40_can_you_feel_12.wav")
    split = opensinger.read("opensinger", tmp_path)
    check_records(split, "opensinger")
    # "光年之外" < "大鱼" in string order, so 大鱼 is Man_0's held-out song; Woman_40 has one song.
    assert [r["Uid"] for r in split.test] == ["Man_0_大鱼_0"]
    assert sorted(r["Uid"] for r in split.train) == ["Man_0_光年之外_0", "Man_0_光年之外_1",
                                                     "Woman_40_can_you_feel_12"]
    assert {r["Song"] for r in split.train} == {"光年之外", "can_you_feel"}


def test_svcc_holds_out_the_listed_files(tmp_path):
    for singer, n in [("IDF1", "10001"), ("IDF1", "10030"), ("IDM1", "10001"), ("CDM1", "10002")]:
        clip(tmp_path / "Data" / singer / f"{n}.wav")
    split = svcc.read("svcc", tmp_path)
    check_records(split, "svcc")
    assert [r["Uid"] for r in split.test] == ["IDF1_10030", "IDM1_10001"]
    assert [r["Uid"] for r in split.train] == ["CDM1_10002", "IDF1_10001"]


def test_vctk_one_file_per_sentence_gendered_names_and_split(tmp_path):
    (tmp_path / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION COMMENTS\np225  23  F    English    Southern  England\n"
        "p226  22  M    English    Surrey\n", encoding="utf-8")
    wavs = tmp_path / "wav48_silence_trimmed"
    for n in ("001", "002", "003", "004"):
        clip(wavs / "p225" / f"p225_{n}_mic1.flac")
        clip(wavs / "p225" / f"p225_{n}_mic2.flac")
    clip(wavs / "p226" / "p226_005_mic2.flac")
    clip(wavs / "p999" / "p999_001_mic1.flac")
    (wavs / "log.txt").write_text("not a speaker")
    split = vctk.read("vctk", tmp_path)
    records = check_records(split, "vctk")
    assert len(records) == 6  # mic1 and mic2 of a sentence count once
    assert [r["Uid"] for r in split.test] == ["female_p225_001", "female_p225_002", "female_p225_003",
                                              "male_p226_005", "p999_001"]
    assert [r["Uid"] for r in split.train] == ["female_p225_004"]
    by_uid = {r["Uid"]: r for r in records}
    assert by_uid["female_p225_004"]["Path"].endswith("p225_004_mic1.flac")
    assert by_uid["male_p226_005"]["Path"].endswith("p226_005_mic2.flac")


def test_custom_nested_and_flat_layouts(tmp_path):
    clip(tmp_path / "alto_2" / "song_a" / "take1.wav")
    clip(tmp_path / "alto_2" / "song_a" / "take2.flac")
    clip(tmp_path / "alto_2" / "song_b" / "take1.mp3", fmt="MP3")
    clip(tmp_path / "alto_2" / "loose.ogg", fmt="OGG")
    clip(tmp_path / "tenor" / "only_song" / "a.WAV", fmt="WAV")
    clip(tmp_path / ".hidden" / "s" / "x.wav")
    (tmp_path / "README.md").write_text("not audio")
    (tmp_path / "tenor" / "only_song" / "notes.txt").write_text("not audio")
    split = custom.read("mine", tmp_path)
    records = check_records(split, "mine")
    assert sorted(r["Uid"] for r in records) == [
        "alto_2_loose", "alto_2_song_a_take1", "alto_2_song_a_take2", "alto_2_song_b_take1",
        "tenor_only_song_a"]
    # alto_2's songs: "loose" (a file directly in the singer folder), song_a, song_b -> song_b held out.
    assert [r["Uid"] for r in split.test] == ["alto_2_song_b_take1"]
    assert {r["Singer"] for r in records} == {"alto_2", "tenor"}


def test_custom_duplicate_uid_is_an_error(tmp_path):
    clip(tmp_path / "s" / "song" / "a.wav")
    clip(tmp_path / "s" / "song" / "a.flac")
    with pytest.raises(MetadataError, match="a.flac.*a.wav|a.wav.*a.flac"):
        custom.read("mine", tmp_path)


def test_custom_empty_tree_describes_the_layout(tmp_path):
    (tmp_path / "singer").mkdir()
    with pytest.raises(MetadataError, match="no audio files.*<singer>/<song>/<utt>"):
        custom.read("mine", tmp_path)


def cfg_with(tmp_path: Path, **kw):
    return config_from_dict({"preprocess": {"processed_dir": str(tmp_path / "processed")},
                             "vocoder": {"type": "griffin_lim"}, **kw})


def test_dataset_type_dispatch_and_unknown_type(tmp_path):
    clip(tmp_path / "corpus" / "s" / "song" / "a.wav")
    cfg = cfg_with(tmp_path, dataset=["mine"], dataset_path={"mine": str(tmp_path / "corpus")},
                   dataset_type={"mine": "custom"})
    (reader, root), = check_datasets(cfg).values()
    assert reader is custom.read and root == (tmp_path / "corpus").resolve()
    cfg = cfg_with(tmp_path, dataset=["mine"], dataset_path={"mine": str(tmp_path / "corpus")})
    with pytest.raises(MetadataError, match="'mine'.*readers: m4singer, opencpop, opensinger, svcc, "
                                            "vctk, custom"):
        check_datasets(cfg)


@pytest.mark.parametrize("paths, message", [
    ({}, "no dataset_path entry"),
    ({"opencpop": "<opencpop>"}, "placeholder"),
    ({"opencpop": ""}, "placeholder"),
    ({"opencpop": "/nonexistent/opencpop"}, "folder not found: /nonexistent/opencpop"),
])
def test_bad_dataset_path_is_one_clear_error(tmp_path, paths, message):
    cfg = cfg_with(tmp_path, dataset=["opencpop"], dataset_path=paths)
    with pytest.raises(MetadataError, match=message):
        check_datasets(cfg)


def test_singer_table_is_global_and_stable(tmp_path):
    processed = tmp_path / "processed"
    first = [{"Dataset": "vctk", "Singer": "male_p226"}, {"Dataset": "vctk", "Singer": "female_p225"}]
    assert update_singer_table(processed, first) == {"vctk_female_p225": 0, "vctk_male_p226": 1}
    second = [{"Dataset": "opensinger", "Singer": "Man_0"}, {"Dataset": "vctk", "Singer": "male_p226"},
              {"Dataset": "opensinger", "Singer": "Woman_40"}]
    table = update_singer_table(processed, second)
    assert table == {"vctk_female_p225": 0, "vctk_male_p226": 1, "opensinger_Man_0": 2,
                     "opensinger_Woman_40": 3}
    assert json.loads((processed / "singers.json").read_text()) == table
    (processed / "singers.json").write_text('{"a": "zero"}')
    with pytest.raises(MetadataError, match="integer id"):
        update_singer_table(processed, first)


def test_write_split_round_trips(tmp_path):
    clip(tmp_path / "corpus" / "s" / "song1" / "a.wav")
    clip(tmp_path / "corpus" / "s" / "song2" / "b.wav")
    split = custom.read("mine", tmp_path / "corpus")
    write_split(tmp_path / "out", split)
    assert json.loads((tmp_path / "out" / "train.json").read_text()) == split.train
    assert json.loads((tmp_path / "out" / "test.json").read_text()) == split.test
    assert [r["Song"] for r in split.test] == ["song2"]
