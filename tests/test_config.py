"""Config loading: base_config inheritance, deep merge, validation errors, overrides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils.config import ConfigError, config_from_dict, config_to_dict, load_config
from utils.paths import resolve_path

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_configs_are_valid():
    cfg = load_config(ROOT / "config" / "comosvc.json")
    assert cfg.preprocess.sample_rate == 24000 and cfg.preprocess.n_mel == 100
    assert cfg.model.comosvc.n_res_blocks == 20 and cfg.model.comosvc.n_layers == 6
    demo = load_config(ROOT / "egs" / "svc" / "DiffComoSVC" / "exp_config_demo.json")
    assert demo.preprocess.sample_rate == 22050 and demo.vocoder.type == "hifigan"
    assert demo.dataset == ["gtsinger_demo"] and demo.dataset_type == {"gtsinger_demo": "custom"}


def test_deep_merge_chain_and_list_of_bases(tmp_path):
    write(tmp_path / "a.json", '{"train": {"batch_size": 4, "seed": 7}, "dataset": ["x", "y"]}')
    write(tmp_path / "b.json", '{"train": {"adamw": {"lr": 0.001}}, "log_dir": "from_b"}')
    cfg_file = write(tmp_path / "sub" / "exp.json", """{
        // JSON5: comments and trailing commas
        base_config: ["../a.json", "../b.json"],
        train: {seed: 9,},
        dataset: ["z"],
    }""")
    cfg = load_config(cfg_file)
    assert cfg.train.batch_size == 4            # from a, untouched by later files
    assert cfg.train.adamw.lr == 0.001     # from b, merged into the same dict
    assert cfg.train.seed == 9                  # the file itself wins
    assert cfg.dataset == ["z"]                 # lists replace, never concatenate
    assert cfg.log_dir == "from_b"
    assert cfg.train.max_frames == 512          # schema default where nobody set it


def test_misspelt_key_names_file_path_and_nearest(tmp_path):
    cfg_file = write(tmp_path / "exp.json", '{"train": {"bacth_size": 8}}')
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file)
    msg = str(e.value)
    assert str(cfg_file.resolve()) in msg
    assert "train.bacth_size" in msg and "train.batch_size" in msg


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.json", '{"preprocess": {"hop_sise": 128}}')
    cfg_file = write(tmp_path / "exp.json", '{"base_config": "base.json"}')
    with pytest.raises(ConfigError, match="base.json.*preprocess.hop_sise.*preprocess.hop_size"):
        load_config(cfg_file)
    assert base.exists()


def test_placeholder_and_type_and_choice_errors(tmp_path):
    cfg_file = write(tmp_path / "exp.json",
                     '{"dataset": ["opencpop"], "dataset_path": {"opencpop": "[Opencpop path]"}}')
    with pytest.raises(ConfigError, match=r"dataset_path.opencpop.*placeholder"):
        load_config(cfg_file, check_datasets=True)
    with pytest.raises(ConfigError, match="train.batch_size must be int"):
        load_config(write(tmp_path / "t.json", '{"train": {"batch_size": "8"}}'))
    with pytest.raises(ConfigError, match="train.batch_size must be int"):
        load_config(write(tmp_path / "b.json", '{"train": {"batch_size": true}}'))
    with pytest.raises(ConfigError, match="preprocess.f0_extractor = 'yin'"):
        load_config(write(tmp_path / "c.json", '{"preprocess": {"f0_extractor": "yin"}}'))


def test_int_is_accepted_for_float_fields(tmp_path):
    cfg = load_config(write(tmp_path / "f.json", '{"preprocess": {"fmax": 8000}, '
                                   '"vocoder": {"type": "griffin_lim"}}'))
    assert isinstance(cfg.preprocess.fmax, float) and cfg.preprocess.fmax == 8000.0


def test_overrides_go_through_validation(tmp_path):
    cfg_file = write(tmp_path / "exp.json", "{}")
    cfg = load_config(cfg_file, ["train.batch_size=8", "vocoder.type=griffin_lim",
                                 "preprocess.content_features=[]"])
    assert cfg.train.batch_size == 8 and cfg.vocoder.type == "griffin_lim"
    assert cfg.preprocess.content_features == []
    with pytest.raises(ConfigError, match="--set train.batchsize=3.*train.batch_size"):
        load_config(cfg_file, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_config(cfg_file, ["train.batch_size"])


def test_base_config_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.json", '{"base_config": "b.json"}')
    write(tmp_path / "b.json", '{"base_config": "a.json"}')
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.json")


def test_round_trip_through_args_json(tmp_path):
    cfg = load_config(ROOT / "config" / "comosvc.json", ["train.seed=3"])
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(data) == cfg
    data["train"]["sed"] = 1
    with pytest.raises(ConfigError, match="train.sed.*train.seed"):
        config_from_dict(data, "args.json")


def test_relative_paths_resolve_from_project_root(tmp_path):
    assert resolve_path("pretrained/x.pt") == ROOT / "pretrained" / "x.pt"
    assert resolve_path(tmp_path) == tmp_path


def test_vocoder_must_match_preprocessing(tmp_path):
    from models.vocoders.formats import check_vocoder
    # the universal HiFi-GAN V1 was trained on 22.05 kHz / 80 mels / fmax 8 kHz
    cfg = load_config(write(tmp_path / "v.json", '{"vocoder": {"type": "hifigan", "path": ""}}'))
    with pytest.raises(ConfigError, match="preprocess.sample_rate = 24000 but the vocoder expects 22050"):
        check_vocoder(cfg, "v.json")


# The snippet of the published DiffComoSVC recipe README (Amphion's egs/svc/DiffComoSVC), as users
# paste it into their exp_config.json.
PUBLISHED = """{
  "base_config": "%s",
  "dataset": ["mine"],
  "dataset_path": {"mine": "%s"},
  "dataset_type": {"mine": "custom"},
  "log_dir": "%s",
  "preprocess": {"processed_dir": "%s"},
  "model": {
    "teacher_model_path": "%s",
    "comosvc": {"distill": true, "input_dim": 384, "output_dim": 100, "n_heads": 2,
                "n_layers": 6, "filter_channels": 512, "P_mean": -1.2, "P_std": 1.2,
                "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80, "rho": 7,
                "n_timesteps": 40}},
  "train": {"batch_size": 32, "adamw": {"lr": 2.0e-4}},
  "inference": {"comosvc": {"inference_steps": 40}},
}"""


def test_the_published_recipe_snippet_validates(tmp_path):
    exp = ROOT / "egs" / "svc" / "DiffComoSVC" / "exp_config.json"
    cfg_file = write(tmp_path / "exp.json", PUBLISHED % (exp, tmp_path / "corpus", tmp_path / "ckpts",
                                                         tmp_path / "processed", tmp_path / "t.pt"))
    cfg = load_config(cfg_file, check_datasets=True)
    assert cfg.model.comosvc.distill and cfg.model.comosvc.input_dim == 384
    assert cfg.train.adamw.lr == 2e-4 and cfg.inference.comosvc.inference_steps == 40
    assert cfg.preprocess.processed_dir == str(tmp_path / "processed")
    assert cfg.dataset == ["mine"]  # the recipe's opencpop / m4singer placeholders are not checked


def test_every_problem_is_reported_at_once(tmp_path):
    cfg_file = write(tmp_path / "exp.json", """{
        dataset: ["opencpop"], dataset_path: {opencpop: "[Opencpop dataset path]"},
        train: {bacth_size: 8, adamw: {lr: -1}}, preprocess: {hop_sise: 128},
    }""")
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file, check_datasets=True)
    lines = str(e.value).splitlines()
    assert lines[0] == "4 problems in the config:"
    text = "\n".join(lines)
    for needle in ("'train.bacth_size'; did you mean 'train.batch_size'",
                   "'preprocess.hop_sise'; did you mean 'preprocess.hop_size'",
                   "dataset_path.opencpop is still the placeholder",
                   "train.adamw.lr = -1.0 must be > 0"):
        assert sum(needle in line for line in lines[1:]) == 1, (needle, text)


def test_placeholders_of_unused_datasets_and_stage_2_3_are_not_checked(tmp_path):
    exp = ROOT / "egs" / "svc" / "DiffComoSVC" / "exp_config.json"
    assert load_config(exp).dataset == ["opencpop", "m4singer"]        # stages 2-3: not checked
    with pytest.raises(ConfigError, match="2 problems"):
        load_config(exp, check_datasets=True)                          # stage 1: both reported


def test_old_layout_names_the_new_key(tmp_path):
    for old, new in (('{"processed_dir": "x"}', "preprocess.processed_dir"),
                     ('{"train": {"learning_rate": 0.1}}', "train.adamw.lr"),
                     ('{"inference": {"inference_steps": 4}}', "inference.comosvc.inference_steps"),
                     ('{"model": {"encoder": {"n_layers": 2}}}', "model.comosvc")):
        with pytest.raises(ConfigError, match=f"did you mean '{new}"):
            load_config(write(tmp_path / "old.json", old))


def test_ranges_and_relations(tmp_path):
    with pytest.raises(ConfigError, match="model.comosvc.output_dim = 80 must equal preprocess.n_mel = 100"):
        load_config(write(tmp_path / "r.json", '{"model": {"comosvc": {"output_dim": 80}}}'))
    with pytest.raises(ConfigError, match="model.comosvc.n_heads = 5 must divide model.comosvc.input_dim = 384"):
        load_config(write(tmp_path / "h.json", '{"model": {"comosvc": {"n_heads": 5}}}'))
    with pytest.raises(ConfigError, match=r"model.comosvc.dropout = 1.0 must be >= 0 and < 1"):
        load_config(write(tmp_path / "d.json", '{"model": {"comosvc": {"dropout": 1}}}'))


def test_base_config_folder_and_missing_base_name_the_referrer(tmp_path):
    (tmp_path / "dir").mkdir()
    exp = write(tmp_path / "exp.json", '{"base_config": "dir"}')
    with pytest.raises(ConfigError, match=r"dir \(the base_config of .*exp.json\): is a folder"):
        load_config(exp)
    exp = write(tmp_path / "exp2.json", '{"base_config": "gone.json"}')
    with pytest.raises(ConfigError, match=r"not found: .*gone.json \(the base_config of .*exp2.json\)"):
        load_config(exp)
