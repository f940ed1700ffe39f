"""ContentVec (Qian et al. 2022, "ContentVec: An Improved Self-Supervised Speech Representation by
Disentangling Speakers") from its fairseq release to transformers' HubertModel, without fairseq.

The released ``checkpoint_best_legacy_500.pt`` is a fairseq HuBERT-base checkpoint (Hsu et al. 2021):
a 7-layer conv front end (first layer group-normed), LayerNorm + projection, a weight-normed
convolutional position embedding, 12 post-LayerNorm Transformer layers, and ``final_proj``
(768 -> 256). Its state dict maps one to one onto ``transformers.HubertModel`` (``feat_extract_norm=
"group"``, ``do_stable_layer_norm=False``); ``final_proj`` is kept beside it as a plain Linear.

Loading is safe: ``torch.load(weights_only=True)``, with every non-tensor class the checkpoint pickles
(fairseq/omegaconf configs, dictionaries) replaced by an inert stand-in that runs none of its code.

Converted folder layout (``cantor convert-contentvec``): ``config.json`` + ``model.safetensors``
(HubertModel.save_pretrained) and ``final_proj.safetensors`` (``weight`` (P, H), ``bias`` (P,)).
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FINAL_PROJ_FILE = "final_proj.safetensors"
# HuBERT / wav2vec 2.0 conv front end: kernel -> stride (Baevski et al. 2020, Sec. 2 / fairseq
# conv_feature_layers "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2").
FRONT_END_KERNELS = (10, 3, 3, 3, 3, 2, 2)
FRONT_END_STRIDES = (5, 2, 2, 2, 2, 2, 2)
HEAD_DIM = 64  # HuBERT base/large attention head size, used when the checkpoint does not say

# fairseq key -> transformers HubertModel key ({pos_g}/{pos_v}: weight-norm names of this torch).
_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", r"{pos_g}"),
    (r"encoder\.pos_conv\.0\.weight_v", r"{pos_v}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.([qkv]|out)_proj\.(weight|bias)",
     r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
_DROPPED = {"label_embs_concat"}  # pre-training cluster embeddings, unused for features


class _Opaque:
    """Inert stand-in for any class a fairseq checkpoint pickles: it keeps the pickled arguments
    (``args``) and state (``state``) and runs no code of the original class."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


def load_fairseq_checkpoint(path: Path) -> dict:
    """Load a fairseq checkpoint dict with ``torch.load(weights_only=True)``; its non-torch classes
    become :class:`_Opaque`. Raises ValueError (naming the file) if it is not a torch checkpoint or
    has no ``"model"`` state dict."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except ValueError:
        unsafe = []  # legacy (non-zip) file: load as is; foreign classes then fail below
    try:
        with torch.serialization.safe_globals([(_Opaque, name) for name in unsafe]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle raises many types for a foreign or broken file
        raise ValueError(f"{path}: cannot read as a fairseq checkpoint: {e}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f"{path}: no 'model' state dict: not a fairseq checkpoint")
    return ckpt


def _unwrap(value):
    while isinstance(value, _Opaque):  # omegaconf value node: the value is in its state's _val
        value = value.state.get("_val") if isinstance(value.state, dict) else None
    return value


def _find_setting(obj, key: str, seen: set[int]):
    """The value stored under ``key`` anywhere in a checkpoint's config objects (an argparse
    Namespace ``args`` or an omegaconf ``cfg``, both opaque here), or None."""
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    if isinstance(obj, dict):
        if key in obj:
            return _unwrap(obj[key])
        children = list(obj.values())
    elif isinstance(obj, _Opaque):
        children = [obj.state, *obj.args]
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    else:
        return None
    for child in children:
        found = _find_setting(child, key, seen)
        if found is not None:
            return found
    return None


def hubert_from_fairseq(ckpt: dict, source: str = "checkpoint"):
    """Build ``(transformers.HubertModel, final_proj Linear or None)`` from a fairseq HuBERT/ContentVec
    checkpoint dict (``ckpt["model"]`` state dict; head count from its ``args``/``cfg`` when stored,
    else hidden_size / 64). Both in eval mode, float32.

    Raises: ValueError (naming ``source``) for a front end other than HuBERT's, a pre-LayerNorm
        (large-style) encoder, or keys that do not map.
    """
    from transformers import HubertConfig, HubertModel

    state = {k: v for k, v in ckpt["model"].items() if k not in _DROPPED}
    n_conv = len([k for k in state if re.fullmatch(r"feature_extractor\.conv_layers\.\d+\.0\.weight", k)])
    kernels = tuple(state[f"feature_extractor.conv_layers.{i}.0.weight"].shape[-1] for i in range(n_conv))
    if kernels != FRONT_END_KERNELS or "feature_extractor.conv_layers.0.2.weight" not in state:
        raise ValueError(f"{source}: conv front end with kernels {kernels} is not HuBERT-base's "
                         f"{FRONT_END_KERNELS} with a group-normed first layer")
    settings = {k: _find_setting({"args": ckpt.get("args"), "cfg": ckpt.get("cfg")}, k, set())
                for k in ("encoder_attention_heads", "layer_norm_first")}
    if settings["layer_norm_first"]:
        raise ValueError(f"{source}: pre-LayerNorm (layer_norm_first) encoders are not supported")
    hidden = state["post_extract_proj.weight"].shape[0]
    heads = settings["encoder_attention_heads"] or hidden // HEAD_DIM
    pos_v = state["encoder.pos_conv.0.weight_v"]
    config = HubertConfig(
        hidden_size=hidden,
        num_hidden_layers=len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")}),
        num_attention_heads=int(heads),
        intermediate_size=state["encoder.layers.0.fc1.weight"].shape[0],
        conv_dim=tuple(state[f"feature_extractor.conv_layers.{i}.0.weight"].shape[0] for i in range(n_conv)),
        conv_kernel=FRONT_END_KERNELS, conv_stride=FRONT_END_STRIDES,
        conv_bias="feature_extractor.conv_layers.0.0.bias" in state,
        feat_extract_norm="group", do_stable_layer_norm=False, feat_proj_layer_norm=True,
        num_conv_pos_embeddings=pos_v.shape[-1], num_conv_pos_embedding_groups=hidden // pos_v.shape[1],
    )
    model = HubertModel(config)
    names = set(model.state_dict())
    pos_g, pos_v_name = (("encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                          "encoder.pos_conv_embed.conv.parametrizations.weight.original1")
                         if "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in names else
                         ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v"))
    mapped, final_proj, unknown = {}, {}, []
    for key, value in state.items():
        if key.startswith("final_proj."):
            final_proj[key[len("final_proj."):]] = value.float()
            continue
        for pattern, template in _RULES:
            if re.fullmatch(pattern, key):
                mapped[re.sub(pattern, template, key).format(pos_g=pos_g, pos_v=pos_v_name)] = value.float()
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source}: keys with no HubertModel counterpart: {', '.join(unknown[:8])}")
    missing = sorted(names - set(mapped))
    if missing:
        raise ValueError(f"{source}: HubertModel weights missing from the checkpoint: {', '.join(missing[:8])}")
    model.load_state_dict(mapped)
    proj = None
    if final_proj:
        proj = torch.nn.Linear(final_proj["weight"].shape[1], final_proj["weight"].shape[0])
        proj.load_state_dict(final_proj)
        proj.eval()
    log.info("%s: HuBERT %d layers x %d, %d heads, final_proj %s", source, config.num_hidden_layers,
             hidden, heads, tuple(final_proj["weight"].shape) if final_proj else None)
    return model.eval(), proj


def convert_contentvec(fairseq_path: Path, out_dir: Path) -> None:
    """Write the converted folder (see module docstring) for a fairseq ContentVec checkpoint.

    Raises: FileNotFoundError if ``fairseq_path`` is absent; ValueError as load_fairseq_checkpoint /
        hubert_from_fairseq.
    """
    from safetensors.torch import save_file

    if not fairseq_path.is_file():
        raise FileNotFoundError(f"fairseq checkpoint not found: {fairseq_path}")
    model, proj = hubert_from_fairseq(load_fairseq_checkpoint(fairseq_path), str(fairseq_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    # Written beside the folder first, then each file is renamed into place (atomic per file).
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        model.save_pretrained(tmp)
        if proj is not None:
            save_file({k: v.contiguous() for k, v in proj.state_dict().items()},
                      str(Path(tmp) / FINAL_PROJ_FILE))
        for f in Path(tmp).iterdir():
            os.replace(f, out_dir / f.name)
