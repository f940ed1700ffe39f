"""The whole DiffComoSVC recipe from a folder of clips, in one process (``cantor train DATA_DIR``):
write the experiment's config, run stage 1, train the teacher, distil the one-step student.

Experiment layout, ``<log root>/<name>/``: ``exp_config.json`` (written once, then only read: edit
it to change the run), ``processed/`` (stage 1's output), ``teacher/`` and ``student/`` (stage 2).
Every step resumes: stage 1 skips valid features, a training with a checkpoint continues from it,
and a finished training returns at once; so re-running the same command continues where it stopped.

Fine-tuning (``base``): the new experiment inherits the base teacher's whole config (the weights
fit only it), starts its singer table from the base's (old ids keep their meaning; new singers get
the next ids), and its teacher starts from the base's weights (``--resume_type finetune``). The
base's datasets stay in ``dataset`` so their statistics (the mel range and F0 of the old singers)
travel in the new checkpoints; with ``keep_old_singers`` their utterances are trained on again
(linked from the base's processed folder), otherwise they contribute statistics only.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from models.base.checkpoint import latest_checkpoint, load_checkpoint, resolve_checkpoint
from utils.config import ConfigError, load_config, parse_override
from utils.io import save_json
from utils.paths import PROJECT_ROOT, resolve_path

log = logging.getLogger(__name__)

PRESETS = {"demo": PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config_demo.json",
           "full": PROJECT_ROOT / "egs/svc/DiffComoSVC/exp_config.json"}
# The demo distils for half as many steps as its teacher trains (run_demo.sh: 800 and 400).
STUDENT_FRACTION = 0.5


@dataclass(frozen=True)
class Experiment:
    """Where one ``cantor train`` experiment lives (module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "exp_config.json"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def student(self) -> Path:
        return self.root / "student"


def dataset_name(data_dir: Path) -> str:
    """The dataset name of a clips folder: its folder name, lower case, [a-z0-9_] only."""
    return re.sub(r"[^a-z0-9_]+", "_", data_dir.resolve().name.lower()).strip("_") or "mine"


def _deep_update(base: dict, over: dict) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def _finetune_base(exp: Experiment, base_file: Path, keep_old_singers: bool) -> dict:
    """Seed ``exp.processed`` from the base teacher checkpoint and return its config dict."""
    state = load_checkpoint(base_file)
    if state["student"]:
        raise ConfigError(f"--base {base_file} is a distilled student: fine-tune from a teacher")
    base_cfg = state["config"]
    exp.processed.mkdir(parents=True, exist_ok=True)
    singers = exp.processed / "singers.json"
    if not singers.exists():
        save_json(singers, state["singers"])
    base_processed = resolve_path(base_cfg["preprocess"]["processed_dir"])
    for name in base_cfg["dataset"]:
        target = exp.processed / name
        if target.exists() or target.is_symlink():
            continue
        if keep_old_singers:
            if not (base_processed / name / "train.json").is_file():
                raise ConfigError(f"--keep-old-singers: the base's processed data "
                                  f"{base_processed / name} is not on this machine")
            target.symlink_to(base_processed / name, target_is_directory=True)
        else:
            save_json(target / "statistics.json", state["statistics"][name])
            save_json(target / "train.json", [])
            save_json(target / "test.json", [])
    return base_cfg


def write_experiment(data_dir: str | Path, name: str | None = None, preset: str | None = None,
                     base: str | Path | None = None, steps: int | None = None,
                     keep_old_singers: bool = False, log_root: str | Path = "ckpts",
                     overrides: Sequence[str] = ()) -> tuple[Experiment, str]:
    """Write the experiment config for ``data_dir`` (once; an existing one is kept as it is).

    Args:
        data_dir: clips, ``<singer>/<song>/<utt>.wav`` (``cantor prepare``'s output).
        name: experiment name (default: the dataset name of data_dir).
        preset: "demo" (the CPU demo's model and front end) or "full" (the published recipe);
            None: full when torch sees a GPU, else demo. Ignored with ``base``.
        base: a teacher experiment folder or checkpoint to fine-tune from.
        steps: teacher training steps (default: the preset's ``train.max_steps``); the student
            distils for half as many.
        overrides: "KEY.PATH=VALUE" settings written into the new config (e.g. a smaller model).
    Returns: (the experiment, its dataset name).
    Raises: ConfigError for a missing data folder, a bad preset or base, or an invalid config;
        CheckpointError for an unreadable base.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir}: not a folder of clips (make one with cantor prepare)")
    ds = dataset_name(data_dir)
    exp = Experiment(resolve_path(log_root) / (name or ds))
    if exp.config.is_file():
        log.info("using the existing %s", exp.config)
        return exp, ds
    over: dict = {"dataset_path": {ds: str(data_dir.resolve())}, "dataset_type": {ds: "custom"},
                  "log_dir": str(exp.root), "preprocess": {"processed_dir": str(exp.processed)}}
    if base is not None:
        base_file = resolve_checkpoint(resolve_path(base), "base teacher checkpoint (--base)")
        base_cfg = _finetune_base(exp, base_file, keep_old_singers)
        save_json(exp.root / "base_config.json", base_cfg)
        over.update({"base_config": "base_config.json", "dataset": [*base_cfg["dataset"], ds],
                     "base_teacher": str(base_file)})
    else:
        if preset is None:
            import torch
            preset = "full" if torch.cuda.is_available() else "demo"
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
        over.update({"base_config": str(PRESETS[preset]), "dataset": [ds]})
    for text in [*overrides, *([f"train.max_steps={steps}"] if steps is not None else [])]:
        _deep_update(over, parse_override(text))
    base_teacher = over.pop("base_teacher", None)
    exp.root.mkdir(parents=True, exist_ok=True)
    save_json(exp.root / "journey.json", {"dataset": ds, "base_teacher": base_teacher})
    exp.config.write_text(json.dumps(over, indent=2), encoding="utf-8")
    load_config(exp.config)  # fail now, not after stage 1, on an invalid result
    return exp, ds


def run_experiment(exp: Experiment, num_workers: int | None = None) -> list[str]:
    """Stage 1 on the experiment's own dataset, then the teacher and the student, each resumed.

    Returns: the singer keys of the experiment's own dataset (targets for ``cantor infer``).
    Raises: as stage 1 and the trainers (ConfigError, DataError, CheckpointError, MetadataError).
    """
    from models.svc.comosvc.trainer import ComoSVCTrainer
    from models.vocoders.formats import check_vocoder
    from processors.stage1 import run_stage1

    journey = json.loads((exp.root / "journey.json").read_text(encoding="utf-8"))
    ds, base_teacher = journey["dataset"], journey["base_teacher"]
    cfg = load_config(exp.config)
    check_vocoder(cfg, str(exp.config))
    run_stage1(load_config(exp.config, [f"dataset={json.dumps([ds])}"], check_datasets=True),
               num_workers=num_workers)

    own = latest_checkpoint(exp.teacher) is not None
    if own or base_teacher is None:
        teacher = ComoSVCTrainer(cfg, "teacher", resume=own)
    else:
        teacher = ComoSVCTrainer(cfg, "teacher", resume_from=base_teacher, resume_type="finetune")
    teacher.train()

    student_steps = max(1, round(cfg.train.max_steps * STUDENT_FRACTION))
    distill = load_config(exp.config, ["model.comosvc.distill=true",
                                       f"model.teacher_model_path={exp.teacher}",
                                       f"train.max_steps={student_steps}"])
    ComoSVCTrainer(distill, "student", resume=latest_checkpoint(exp.student) is not None).train()
    singers = json.loads((exp.processed / "singers.json").read_text(encoding="utf-8"))
    return sorted(k for k in singers if k.startswith(f"{ds}_"))
