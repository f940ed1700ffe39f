"""so-vits-svc 4.1 generators in Cantor: a ``G_<step>.pth`` (``torch.save({"model": state_dict,
"iteration", "optimizer", "learning_rate"})``, weight-normalised convolutions stored as
``weight_g`` / ``weight_v``) and the ``config.json`` beside it become a Cantor VitsSVC checkpoint
dict (models/base/checkpoint.py) that :class:`models.svc.vits.inference.VitsConverter` loads.

Read with ``torch.load(weights_only=True)``. What maps (facts from svc-develop-team/so-vits-svc
4.1-Stable ``models.py``, ``modules/``, ``vdecoder/hifigan/models.py``; the names on the right are
models/svc/vits/model.py's):

- ``emb_g`` -> ``singer_embedding``; ``pre`` (content pre-net) -> ``prior.content_pre.contentvec``;
  ``emb_uv`` (1 = voiced) -> ``prior.voiced_embedding``; ``enc_p.f0_emb`` / ``enc_p.proj`` ->
  ``prior.f0_embedding`` / ``prior.proj``;
- the prior Transformer ``enc_p.enc_``: ``attn_layers.i.conv_{q,k,v,o}`` (1x1 convolutions) ->
  ``attention.i.{query,key,value,out}`` (linear layers: the last axis dropped), ``emb_rel_{k,v}``
  (1, 2w+1, d) -> ``rel_{key,value}`` (2w+1, d), ``norm_layers_{1,2}.i.{gamma,beta}`` ->
  ``norm_{attention,feed_forward}.i.{weight,bias}``, ``ffn_layers.i.conv_{1,2}`` ->
  ``feed_forward.i.conv_{in,out}``;
- ``enc_q`` -> ``posterior``; ``flow.flows.2k`` (every other module is a parameter-free flip) ->
  ``flow.flows.k``; ``dec`` -> ``decoder`` (the same names);
- ``f0_decoder`` (the optional F0 predictor) is left out (Cantor's predictor has another
  Transformer, models/svc/vits/f0_predictor.py): conversion uses the source's F0.

Features: ContentVec layer 12 as is (``speech_encoder`` "vec768l12", 768-d,
``preprocess.contentvec_final_proj`` false) through processors/content/contentvec.py. so-vits-svc
quantises F0 over 50-1100 Hz in 256 bins, as Cantor's defaults do. The singer names are the keys of
config.json's ``spk``; the file has no F0 statistics, so autoshift is unavailable.

Not supported (a ValueError names the key): other speech encoders, ``vol_embedding``,
``use_transformer_flow``, ``flow_share_parameter``, ``use_depthwise_conv``, another vocoder than
nsf-hifigan, ResBlock2.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from models.base.checkpoint import FORMAT, CheckpointError
from models.vocoders.generator import fold_weight_norm
from utils.config import config_from_dict, config_to_dict
from utils.io import load_json

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
DATASET = "sovits"
# (so-vits-svc model key, required value): what the key map covers.
SUPPORTED = (("speech_encoder", "vec768l12"), ("vol_embedding", False),
             ("use_transformer_flow", False), ("flow_share_parameter", False),
             ("use_depthwise_conv", False), ("vocoder_name", "nsf-hifigan"), ("resblock", "1"))
# Fixed in so-vits-svc's code: posterior WaveNet layers, couplings.
POSTERIOR_LAYERS = 16
N_FLOWS = 4

_RULES = [(re.compile(a), b) for a, b in (
    (r"^emb_g\.", "singer_embedding."),
    (r"^pre\.", "prior.content_pre.contentvec."),
    (r"^emb_uv\.", "prior.voiced_embedding."),
    (r"^enc_p\.f0_emb\.", "prior.f0_embedding."),
    (r"^enc_p\.proj\.", "prior.proj."),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.conv_q\.", r"prior.encoder.attention.\1.query."),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.conv_k\.", r"prior.encoder.attention.\1.key."),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.conv_v\.", r"prior.encoder.attention.\1.value."),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.conv_o\.", r"prior.encoder.attention.\1.out."),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.emb_rel_k$", r"prior.encoder.attention.\1.rel_key"),
    (r"^enc_p\.enc_\.attn_layers\.(\d+)\.emb_rel_v$", r"prior.encoder.attention.\1.rel_value"),
    (r"^enc_p\.enc_\.norm_layers_1\.(\d+)\.gamma$", r"prior.encoder.norm_attention.\1.weight"),
    (r"^enc_p\.enc_\.norm_layers_1\.(\d+)\.beta$", r"prior.encoder.norm_attention.\1.bias"),
    (r"^enc_p\.enc_\.norm_layers_2\.(\d+)\.gamma$", r"prior.encoder.norm_feed_forward.\1.weight"),
    (r"^enc_p\.enc_\.norm_layers_2\.(\d+)\.beta$", r"prior.encoder.norm_feed_forward.\1.bias"),
    (r"^enc_p\.enc_\.ffn_layers\.(\d+)\.conv_1\.", r"prior.encoder.feed_forward.\1.conv_in."),
    (r"^enc_p\.enc_\.ffn_layers\.(\d+)\.conv_2\.", r"prior.encoder.feed_forward.\1.conv_out."),
    (r"^enc_q\.", "posterior."),
    (r"^dec\.", "decoder."),
)]
_FLOW = re.compile(r"^flow\.flows\.(\d+)\.(.*)$")
_LINEAR = re.compile(r"\.attention\.\d+\.(query|key|value|out)\.weight$")


def is_sovits_checkpoint(path: Path) -> bool:
    """A ``.pth`` file with a so-vits-svc ``config.json`` (one with ``model`` and ``spk``) beside it."""
    config = path.parent / CONFIG_NAME
    if path.suffix != ".pth" or not config.is_file():
        return False
    try:
        data = load_json(config)
    except ValueError:
        return False
    return isinstance(data, dict) and "spk" in data and "model" in data


def map_key(name: str) -> str | None:
    """The VitsSVC parameter name of a so-vits-svc 4.1 one (weight norm already folded), or None
    for the left-out F0 predictor. Raises: KeyError for an unknown name."""
    if name.startswith("f0_decoder."):
        return None
    flow = _FLOW.match(name)
    if flow:
        index = int(flow[1])
        if index % 2:
            raise KeyError(f"flow module {index} should be a parameter-free flip: {name}")
        return f"flow.flows.{index // 2}.{flow[2]}"
    for pattern, replacement in _RULES:
        if pattern.search(name):
            return pattern.sub(replacement, name)
    raise KeyError(f"unknown so-vits-svc 4.1 parameter {name}")


def map_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A so-vits-svc 4.1 ``SynthesizerTrn`` state dict as a VitsSVC one (module doc).

    Raises: KeyError naming an unknown parameter."""
    out = {}
    for name, value in fold_weight_norm(state).items():
        new = map_key(name)
        if new is None:
            continue
        if _LINEAR.search(new):
            value = value[..., 0]
        elif new.endswith((".rel_key", ".rel_value")):
            value = value[0]
        out[new] = value
    return out


def map_config(sovits: dict, source: Path) -> dict:
    """The Cantor config dict (VitsSVC) of a so-vits-svc 4.1 ``config.json``.

    Raises: ValueError naming a setting the key map does not cover."""
    data, model, train = sovits["data"], sovits["model"], sovits.get("train", {})
    for key, wanted in SUPPORTED:
        value = model.get(key, wanted)
        if value != wanted:
            raise ValueError(f"{source}: model.{key} = {value!r} is not supported (only {wanted!r})")
    sr = data["sampling_rate"]
    return {
        "model_type": "VitsSVC",
        "preprocess": {
            "sample_rate": sr, "hop_size": data["hop_length"], "n_fft": data["filter_length"],
            "win_size": data["win_length"], "n_mel": data["n_mel_channels"],
            "fmin": data.get("mel_fmin", 0.0), "fmax": data.get("mel_fmax") or sr / 2,
            "f0_min": 50.0, "f0_max": 1100.0, "content_features": ["contentvec"],
            "contentvec_final_proj": False, "extract_audio": True},
        "model": {
            "condition_encoder": {"contentvec_dim": model["ssl_dim"], "f0_bins": 256,
                                  "singer_table_size": model["n_speakers"]},
            "vits": {
                "inter_channels": model["inter_channels"], "hidden_channels": model["hidden_channels"],
                "filter_channels": model["filter_channels"], "n_heads": model["n_heads"],
                "n_layers": model["n_layers"], "kernel_size": model["kernel_size"],
                "dropout": model["p_dropout"], "n_layers_q": POSTERIOR_LAYERS, "n_flows": N_FLOWS,
                "n_flow_layer": model.get("n_flow_layer", 4), "gin_channels": model["gin_channels"],
                "singer_in_prior": False, "upsample_rates": model["upsample_rates"],
                "upsample_kernel_sizes": model["upsample_kernel_sizes"],
                "upsample_initial_channel": model["upsample_initial_channel"],
                "resblock_kernel_sizes": model["resblock_kernel_sizes"],
                "resblock_dilation_sizes": model["resblock_dilation_sizes"],
                "segment_size": train.get("segment_size", 10240), "use_f0_predictor": False}},
    }


def read_sovits(path: Path, config_path: Path | None = None) -> dict:
    """A so-vits-svc 4.1 generator file as a Cantor conversion checkpoint dict.

    Args: path: ``G_*.pth``; config_path: its config.json (default: beside it).
    Returns: the dict models/base/checkpoint.py describes (singers: config.json's ``spk``).
    Raises: CheckpointError naming the file when it cannot be read with weights_only=True, lacks
        "model", or holds parameters the key map does not know; or a setting is unsupported.
    """
    config_path = config_path or path.parent / CONFIG_NAME
    try:
        sovits = load_json(config_path)
        cfg = config_from_dict(map_config(sovits, config_path), f"{config_path} (so-vits-svc)")
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{config_path}: {e}") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt or foreign file
        raise CheckpointError(f"{path}: cannot read it with weights_only=True ({type(e).__name__}: "
                              f"{str(e)[:300]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path}: not a so-vits-svc generator (no 'model' state dict)")
    try:
        state = map_state({k.removeprefix("module."): v for k, v in data["model"].items()})
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} with {config_path}: {e}") from None
    singers = {str(name): int(i) for name, i in sovits["spk"].items()}
    log.info("so-vits-svc 4.1 generator %s (iteration %s): %d singers", path.name,
             data.get("iteration"), len(singers))
    return {"format": FORMAT, "student": False, "model": state, "config": config_to_dict(cfg),
            "singers": singers, "statistics": {DATASET: {"singers": {s: {} for s in singers}}},
            "step": int(data.get("iteration") or 0), "epoch": 0}
