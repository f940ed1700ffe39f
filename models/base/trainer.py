"""The task-independent stage 2 training loop (accelerate): data, optimisation, validation, logging,
checkpoints and resuming. A task subclass supplies the model (:meth:`BaseTrainer.build_model`).

The model interface the loop uses (``models.svc.comosvc.model.ComoSVC`` and its distiller):
``loss(batch) -> dict`` ("loss" to back-propagate plus components, all logged),
``trainable_parameters()`` (or, for a model trained with several optimisers, ``parameter_groups() ->
{name: parameters}``, one AdamW and one scheduler each, stepped in that order with
``loss(batch, part=name)``; ``loss(batch)`` without a part is the validation loss),
``clip_groups() -> {name: parameters}`` (per-module clipping of a one-optimiser model),
``after_optimizer_step()`` (called after each optimizer step that really
happened, never in validation), ``sample(batch, generator=...) -> dict(mel, mu)`` (normalised mels)
and ``export_state_dict()`` (what conversion loads, see models/base/checkpoint.py).

One training step = ``train.gradient_accumulation_steps`` micro-batches (1 with several
optimisers: every optimiser's gradients are cleared after each part's step, since a later part's
backward pass also reaches the earlier part's parameters) (accelerate's
``accumulate``: gradients synchronised across processes on the last one only), gradient clipping at
``train.grad_clip`` (``train.grad_clip_scope`` per_module: each group of the model's
``clip_groups()`` on its own, Amphion's; all: one norm over every trained parameter; the norms before
clipping are logged), AdamW, one scheduler step (a reducelronplateau schedule instead steps once per
epoch on the validation loss). ``train.max_steps``
and ``train.max_epochs`` bound the run. Data order, crops and the torch/numpy/python generators are
seeded and saved (every process's generators), so on CPU a resumed run gives the same next losses as
an uninterrupted one; resumed with another number of processes, each process is re-seeded instead.

Speed: ``train.mixed_precision`` (utils/precision.py; "auto": bf16, else fp16 with the gradient
scaler, on CUDA; float32 on CPU), TF32 matmuls and cudnn.benchmark on CUDA, pinned memory and
persistent DataLoader workers on CUDA, ``train.compile`` (torch.compile with Inductor through
accelerate; a second batch length recompiles once with dynamic shapes). A training step makes no device-to-host sync (apart from fp16's gradient-scaler check):
losses are summed on the device, and the model's deferred input checks (modules with
``defer_checks`` / ``raise_deferred_errors()``, e.g. the condition encoder's singer ids) are raised,
and the losses logged, every ``train.log_every_steps``.

Output under ``EXP = log_dir/<exp_name>``: ``args.json`` (merged config), ``checkpoint/``, ``export/``
(students), ``tensorboard/`` (``train/*`` every log_every_steps: each loss, lr, grad_norm;
``valid/*`` every valid_every_steps: mean losses over the test split, mel images (target, mu and
sampled, stacked top to bottom) and audio of target and sampled mels when a vocoder loads).
"""
from __future__ import annotations

import importlib
import logging
import math
from collections import defaultdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import TorchDynamoPlugin, gather_object, set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.base.checkpoint import (CHECKPOINT_DIR, EXPORT_DIR, FORMAT, CheckpointError,
                                    load_checkpoint, process_rng_state, resolve_checkpoint,
                                    resume_checkpoint, rng_state, save_checkpoint, set_rng_state)
from models.base.dataset import (DataError, EpochTaggedBatches, LengthGroupedBatchSampler,
                                 SVCDataset, collate, denormalize_mel, load_singers,
                                 load_statistics)
from models.base.loss_forward import LossForward
from models.base.scheduler import build_scheduler, is_per_epoch
from utils.config import ConfigError, config_to_dict
from utils.paths import resolve_path
from utils.io import save_json
from utils.precision import enable_fast_cuda_math, resolve_mixed_precision
from utils.schema import CantorConfig

log = logging.getLogger(__name__)


class BaseTrainer:
    """Stage 2 training of one experiment.

    Args:
        cfg: the merged, validated config.
        exp_name: experiment folder name under ``cfg.log_dir``.
        resume: continue from the newest checkpoint of this experiment.
        resume_from: continue from this checkpoint file or experiment folder instead.
        resume_type: "resume" (model, optimizer, scheduler, step, data position, RNG) or
            "finetune" (model weights only; a fresh run from step 0).
    Raises:
        ConfigError: no dataset to train on, or a bad resume_type.
        models.base.dataset.DataError: unusable stage 1 output.
        CheckpointError: nothing to resume from, or a checkpoint of the wrong kind.
    """

    #: True when the model trained is a consistency-distilled student (set by subclasses).
    student = False

    def __init__(self, cfg: CantorConfig, exp_name: str, resume: bool = False,
                 resume_from: str | Path | None = None, resume_type: str = "resume"):
        if not cfg.dataset:
            raise ConfigError("dataset is empty: name the datasets to train on")
        if resume_type not in ("resume", "finetune"):
            raise ConfigError(f"resume_type must be resume or finetune, got {resume_type!r}")
        self.cfg = cfg
        self.exp_dir = resolve_path(cfg.log_dir) / exp_name
        try:
            precision = resolve_mixed_precision(cfg.train.mixed_precision)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        # dynamic=None: automatic dynamic shapes (dynamic=True trips an Inductor stride bug here).
        dynamo = TorchDynamoPlugin(backend="inductor" if cfg.train.compile else "no", dynamic=None)
        self.acc = Accelerator(mixed_precision=precision, dynamo_plugin=dynamo,
                               gradient_accumulation_steps=cfg.train.gradient_accumulation_steps)
        self.main = self.acc.is_main_process
        if self.acc.device.type == "cuda":
            enable_fast_cuda_math()
        log.info("training on %s, %d process(es), mixed precision %s (train.mixed_precision = %s)"
                 "%s", self.acc.device, self.acc.num_processes, precision,
                 cfg.train.mixed_precision, ", compiled" if cfg.train.compile else "")
        set_seed(cfg.train.seed, device_specific=True)

        source, state = self._resume_source(resume, resume_from, resume_type)
        self.singers = load_singers(cfg)
        self.statistics = load_statistics(cfg)
        self._build_data()

        self.model = self.build_model()
        if source is not None:
            state = state or load_checkpoint(source)
            if resume_type == "finetune":
                self.load_finetune_weights(state, source)
                log.info("fine-tuning from the weights of %s", source)
                state = None
            else:
                self._load_model_state(state, source)
        self.model.to(self.acc.device)
        groups = (self.model.parameter_groups() if hasattr(self.model, "parameter_groups")
                  else {"model": self.model.trainable_parameters()})
        self.params = {name: list(p) for name, p in groups.items()}
        t = cfg.train
        self.optimizers = {
            name: torch.optim.AdamW(p, lr=t.adamw.lr, betas=tuple(t.adamw.betas), eps=t.adamw.eps,
                                    weight_decay=t.adamw.weight_decay)
            for name, p in self.params.items()}
        self.schedulers = {name: build_scheduler(o, t) for name, o in self.optimizers.items()}
        self.per_epoch_schedule = is_per_epoch(t)
        if self.per_epoch_schedule and self.valid_loader is None:
            raise DataError("train.scheduler.type reducelronplateau steps on the validation loss, "
                            "but the test split is empty")
        self.step, self.epoch, self.batches_done = 0, 0, 0
        self._rng = None
        if state is not None:
            self._load_training_state(state, source)
        content = None
        if t.content_loss.weight > 0:
            from modules.losses.content import ContentConsistencyLoss
            content = ContentConsistencyLoss(cfg).to(self.acc.device)
        self.loss_module, *prepared = self.acc.prepare(
            LossForward(self.model, content, t.content_loss.weight), *self.optimizers.values())
        self.optimizers = dict(zip(self.optimizers, prepared))
        self.checked_modules = [m for m in self.model.modules()
                                if hasattr(m, "raise_deferred_errors")]
        for m in self.checked_modules:
            m.defer_checks = True
        n_all = sum(p.numel() for p in self.model.parameters())
        log.info("%s: %.2f M parameters, %.2f M trained", type(self.model).__name__, n_all / 1e6,
                 sum(p.numel() for ps in self.params.values() for p in ps) / 1e6)
        self.writer = None
        self._vocoder = None

    # --- task hooks -------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """The model to train (interface: module doc), on CPU, before any checkpoint is loaded."""
        raise NotImplementedError

    def load_finetune_weights(self, state: dict, path: Path) -> None:
        """Load the conversion weights ``state["model"]`` for ``--resume_type finetune``.

        Raises:
            CheckpointError: the weights do not fit the model built from the config.
        """
        self._load_state_dict(self.model, state["model"], path)

    # --- setup --------------------------------------------------------------------------------

    def _resume_source(self, resume: bool, resume_from, resume_type: str
                       ) -> tuple[Path | None, dict | None]:
        """(checkpoint to start from, its contents when already loaded): ``--resume`` takes the
        newest intact one, warning about (and setting aside) newer broken ones."""
        if resume_from:
            return resolve_checkpoint(resume_from, "checkpoint to resume from"), None
        if resume:
            found = resume_checkpoint(self.exp_dir)
            if found is None:
                raise CheckpointError(f"--resume: no checkpoint in {self.exp_dir / CHECKPOINT_DIR}")
            return found
        if resume_type == "finetune":
            raise CheckpointError("--resume_type finetune needs --resume_from_ckpt_path (the "
                                  "pretrained checkpoint file or experiment folder)")
        return None, None

    def _build_data(self) -> None:
        cfg, acc = self.cfg, self.acc
        self.train_set = SVCDataset(cfg, "train", True, self.singers, self.statistics)
        if len(self.train_set) == 0:
            raise DataError(f"no training utterances in {resolve_path(cfg.preprocess.processed_dir)} for "
                            f"datasets {cfg.dataset}")
        self.sampler = LengthGroupedBatchSampler(self.train_set.lengths, cfg.train.batch_size,
                                                 cfg.train.seed, True, acc.num_processes,
                                                 acc.process_index)
        workers = cfg.train.dataloader_workers
        cuda = acc.device.type == "cuda"
        # Workers start from a fork server, never by forking this process: by now it runs threads
        # (TensorBoard's writer, BLAS pools, vocoder runtimes), and forking a threaded process can
        # crash either side. Persistent, so the start-up is paid once.
        loader_options = dict(num_workers=workers, collate_fn=collate, persistent_workers=workers > 0,
                              multiprocessing_context="forkserver" if workers > 0 else None,
                              generator=torch.Generator().manual_seed(cfg.train.seed))
        self.train_loader = DataLoader(self.train_set, batch_sampler=EpochTaggedBatches(self.sampler),
                                       pin_memory=cuda, **loader_options)
        self.valid_set = SVCDataset(cfg, "test", False, self.singers, self.statistics)
        self.valid_loader = None
        if len(self.valid_set) == 0:
            log.info("the test split is empty: validation is skipped")
            return
        self.valid_loader = DataLoader(
            self.valid_set, batch_sampler=LengthGroupedBatchSampler(
                self.valid_set.lengths, cfg.train.batch_size, cfg.train.seed, shuffle=False),
            **loader_options)

    @staticmethod
    def _load_state_dict(module: nn.Module, state: dict, path: Path) -> None:
        try:
            module.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: the weights do not fit the model built from this config "
                                  f"(the model.* settings must match the checkpoint's): {e}") from None

    def _load_model_state(self, state: dict, path: Path) -> None:
        if "training" not in state:
            raise CheckpointError(f"{path} is an export (conversion weights only); resume from a "
                                  f"{CHECKPOINT_DIR}/step-*.pt file, or use --resume_type finetune")
        if state["student"] != self.student:
            kind = "a distilled student" if state["student"] else "a teacher"
            raise CheckpointError(f"{path} holds {kind}, but model.comosvc.distill is "
                                  f"{str(self.student).lower()}")
        if state["singers"] != self.singers:
            log.warning("the singer table of %s differs from %s/singers.json; ids may now name "
                        "other singers", path, self.cfg.preprocess.processed_dir)
        self._load_state_dict(self.model, state["training"]["model"], path)

    def _load_training_state(self, state: dict, path: Path) -> None:
        tr = state["training"]
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(tr["optimizer"][name])
            self.schedulers[name].load_state_dict(tr["scheduler"][name])
        if tr.get("scaler") is not None and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(tr["scaler"])
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], tr["batches_done"]
        acc = self.acc
        self._rng = process_rng_state(tr["rng"], acc.process_index, acc.num_processes)
        if self._rng is None:
            log.warning("%s was written by another number of processes than %d: the random "
                        "generators are re-seeded from train.seed and the step", path,
                        acc.num_processes)
            set_seed(self.cfg.train.seed + self.step, device_specific=True)
        log.info("resuming from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # --- checkpoints --------------------------------------------------------------------------

    def _conversion_payload(self) -> dict:
        return {"format": FORMAT, "student": self.student, "model": self.model.export_state_dict(),
                "config": config_to_dict(self.cfg), "singers": self.singers,
                "statistics": self.statistics, "step": self.step, "epoch": self.epoch}

    def save(self) -> None:
        """Write ``checkpoint/step-<step>.pt`` (and ``export/`` for a student) on the main process."""
        self.acc.wait_for_everyone()
        rngs = gather_object([rng_state(self.acc.device)])  # every process's, in process order
        if self.main:
            payload = self._conversion_payload()
            training = {"model": self.model.state_dict(),
                        "optimizer": {n: o.state_dict() for n, o in self.optimizers.items()},
                        "scheduler": {n: s.state_dict() for n, s in self.schedulers.items()},
                        "batches_done": self.batches_done, "rng": rngs}
            if self.acc.scaler is not None:
                training["scaler"] = self.acc.scaler.state_dict()
            keep = self.cfg.train.keep_last
            path = save_checkpoint(self.exp_dir / CHECKPOINT_DIR, self.step,
                                   {**payload, "training": training}, keep)
            if self.student:
                save_checkpoint(self.exp_dir / EXPORT_DIR, self.step, payload, keep)
            log.info("saved %s", path)
        self.acc.wait_for_everyone()

    # --- loop ---------------------------------------------------------------------------------

    def train(self) -> None:
        """Train until ``train.max_steps`` optimizer steps or ``train.max_epochs`` epochs, then save."""
        cfg, acc, t = self.cfg, self.acc, self.cfg.train
        if self.main:
            from torch.utils.tensorboard import SummaryWriter
            save_json(self.exp_dir / "args.json", config_to_dict(cfg))
            self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"),
                                        purge_step=self.step + 1 if self.step else None)
        if self._rng is not None:
            set_rng_state(self._rng, acc.device)
            self._rng = None
        self.model.train()
        saved_at = self.step
        sums: dict[str, torch.Tensor] = {}  # this step's losses summed over micro-batches, on device
        micro = 0
        bar = tqdm(total=t.max_steps, initial=self.step, desc=self.exp_dir.name, unit="step",
                   disable=not self.main, dynamic_ncols=True)
        clip = t.grad_clip if t.grad_clip > 0 else math.inf
        done = self.step >= t.max_steps
        while not done and (t.max_epochs < 0 or self.epoch < t.max_epochs):
            self.sampler.set_epoch(self.epoch, self.batches_done)
            for batch in self.train_loader:
                batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
                self.batches_done += 1
                losses, grad_norm = {}, {}
                with acc.accumulate(self.loss_module):
                    for name, optimizer in self.optimizers.items():
                        part = None if len(self.optimizers) == 1 else name
                        out = self.loss_module(batch, part)
                        acc.backward(out["loss"])
                        if acc.sync_gradients:
                            grad_norm.update(self._clip_gradients(name, clip))
                        optimizer.step()
                        for o in self.optimizers.values():
                            o.zero_grad(set_to_none=True)
                        losses.update({f"{name}_loss" if k == "loss" and part else k: v
                                       for k, v in out.items()})
                for k, v in losses.items():
                    sums[k] = sums[k] + v.detach() if k in sums else v.detach()
                micro += 1
                if not acc.sync_gradients:
                    continue
                if not acc.optimizer_step_was_skipped:
                    if not self.per_epoch_schedule:
                        for scheduler in self.schedulers.values():
                            scheduler.step()
                    self.model.after_optimizer_step()
                self.step += 1
                bar.update(1)
                if self.step % t.log_every_steps == 0:
                    for m in self.checked_modules:
                        m.raise_deferred_errors()
                    means = {k: v / micro for k, v in sums.items()}
                    shown = self._log_train(means, grad_norm)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items() if k.endswith("loss")})
                sums.clear()
                micro = 0
                if self.step % t.valid_every_steps == 0:
                    self.validate()
                if self.step % t.save_every_steps == 0:
                    self.save()
                    saved_at = self.step
                if self.step >= t.max_steps:
                    done = True
                    break
            else:
                self.epoch += 1
                self.batches_done = 0
                if self.per_epoch_schedule:
                    valid_loss = self._valid_means()["loss"]
                    for scheduler in self.schedulers.values():
                        scheduler.step(valid_loss)
        bar.close()
        if saved_at != self.step:
            self.save()
        if self.writer is not None:
            self.writer.close()

    def _clip_gradients(self, part: str, clip: float) -> dict[str, torch.Tensor]:
        """Clip the gradients of one optimiser's parameters (module doc) and return their norms
        before clipping, on the device: {"grad_norm"} for a one-optimiser model clipped as a whole
        (``train.grad_clip_scope`` all), {"grad_norm_<group>"} per clip group (per_module), and
        {"grad_norm_<part>"} for each optimiser of a several-optimiser model."""
        if len(self.optimizers) > 1:
            return {f"grad_norm_{part}": self.acc.clip_grad_norm_(self.params[part], clip)}
        if self.cfg.train.grad_clip_scope == "all" or not hasattr(self.model, "clip_groups"):
            return {"grad_norm": self.acc.clip_grad_norm_(self.params[part], clip)}
        self.acc.unscale_gradients()
        return {f"grad_norm_{name}": nn.utils.clip_grad_norm_(params, clip)
                for name, params in self.model.clip_groups().items()}

    def _log_train(self, means: dict[str, torch.Tensor], grad_norms: dict[str, torch.Tensor]
                   ) -> dict[str, float]:
        """Write the step's mean losses and gradient norms (averaged over processes: the one sync
        of a logged step) and the lr; returns the logged values by name."""
        names = list(means) + list(grad_norms)
        values = torch.stack([torch.as_tensor(v, device=self.acc.device).float()
                              for v in [*means.values(), *grad_norms.values()]])
        values = self.acc.reduce(values, reduction="mean").tolist()
        if self.writer is not None:
            for name, v in zip(names, values):
                self.writer.add_scalar(f"train/{name}", v, self.step)
            lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
            self.writer.add_scalar("train/lr", lr, self.step)
        return dict(zip(names, values))

    # --- validation ---------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> None:
        """Mean losses over the test split, and sampled mels (images, audio) of its first
        ``train.valid_samples`` utterances, on the main process with fixed noise; the training
        generators are left untouched and the model is not updated."""
        if self.main and self.valid_loader is not None:
            for k, v in self._valid_means().items():
                self.writer.add_scalar(f"valid/{k}", v, self.step)
            device = self.acc.device
            self.model.eval()
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(self.cfg.train.seed)
                self._log_samples()
            self.model.train()
        self.acc.wait_for_everyone()

    @torch.no_grad()
    def _valid_means(self) -> dict[str, float]:
        """Mean losses over the test split (utterance-weighted), with the noise of seed
        ``train.seed``, the training generators untouched and the model not updated."""
        device = self.acc.device
        self.model.eval()
        sums: dict[str, float] = defaultdict(float)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.cfg.train.seed)
            for batch in self.valid_loader:
                batch = {k: v.to(device) for k, v in batch.items()}
                n = batch["mask"].shape[0]
                losses = self.model.loss(batch)
                losses.pop("predicted", None)
                for k, v in losses.items():
                    sums[k] += float(v) * n
        self.model.train()
        return {k: v / len(self.valid_set) for k, v in sums.items()}

    def sample_batch(self) -> tuple[dict[str, torch.Tensor], torch.Generator] | None:
        """The first ``train.valid_samples`` test utterances as one batch on the device, with a
        generator seeded by ``train.seed`` (fixed noise); None when nothing is to be logged."""
        n = min(self.cfg.train.valid_samples, len(self.valid_set))
        if n == 0:
            return None
        device = self.acc.device
        batch = {k: v.to(device) for k, v in collate([self.valid_set[i] for i in range(n)]).items()}
        return batch, torch.Generator(device=device).manual_seed(self.cfg.train.seed)

    def _log_samples(self) -> None:
        if (sampled := self.sample_batch()) is None:
            return
        batch, generator = sampled
        n = batch["mask"].shape[0]
        out = self.model.sample(batch, generator=generator)
        from models.base.plot import mel_image
        vocoder = self._load_vocoder()
        for i in range(n):
            t = int(batch["mask"][i].sum())
            mels = {"target": batch["mel"][i, :, :t], "mu": out["mu"][i, :, :t],
                    "sampled": out["mel"][i, :, :t]}
            self.writer.add_image(f"valid/mel_{i}/target_mu_sampled", mel_image(
                [v.float().cpu().numpy() for v in mels.values()]), self.step)
            if vocoder is None:
                continue
            stats = self.statistics[self.valid_set.entries[i]["Dataset"]]
            lo = torch.tensor(stats["mel_min"], device=batch["mel"].device)
            hi = torch.tensor(stats["mel_max"], device=batch["mel"].device)
            for name in ("target", "sampled"):
                wav = vocoder(denormalize_mel(mels[name].float(), lo, hi)[None])[0]
                self.writer.add_audio(f"valid/{name}_{i}", wav.clamp(-1, 1).cpu()[None],
                                      self.step, sample_rate=vocoder.sample_rate)

    def _load_vocoder(self):
        """``models.vocoders.load_vocoder(cfg, device)`` once; None (logged once) when that is not
        available or fails, e.g. a missing vocoder checkpoint."""
        if self._vocoder is None:
            self._vocoder = False
            try:
                load = getattr(importlib.import_module("models.vocoders"), "load_vocoder")
                self._vocoder = load(self.cfg, self.acc.device)
            except Exception as e:  # any failure only costs the audio samples
                log.info("validation audio skipped: no usable vocoder (%s: %s)", type(e).__name__, e)
        return None if self._vocoder is False else self._vocoder
