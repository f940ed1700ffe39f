"""CTranslate2 Whisper ``model.bin`` -> openai-whisper checkpoint, without ctranslate2.

CTranslate2's binary layout (``ModelSpec.save`` / ``models::Model::load``, binary versions 4-6),
all integers little-endian:

    u32 binary_version, str spec_name, u32 spec_revision, u32 n_variables,
    n_variables x { str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes, bytes data },
    u32 n_aliases, n_aliases x { str alias, str target }
    str = u16 length (including a trailing NUL) + UTF-8 bytes + NUL
    dtype: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16

An int8-quantised weight ``W`` comes with ``W_scale`` (one float per output row): W = q / scale.

WhisperSpec names -> openai-whisper ``Whisper`` state dict: ``{en,de}coder/layer_i/self_attention/
linear_0`` is the fused [query; key; value] projection (key without bias: its bias part is zero),
``linear_1`` the output; the decoder's ``attention`` (cross-attention) has ``linear_0`` query,
``linear_1`` fused [key; value], ``linear_2`` output; ``ffn/linear_0|1`` are ``mlp.0|2``; each
``layer_norm`` (gamma, beta) is the pre-norm of its block; ``decoder/projection`` is tied to the
token embedding. The result, ``{"dims": ModelDimensions fields, "model_state_dict": ...}``, is what
``whisper.load_model(path)`` reads (dtypes kept, int8 dequantised to float32).
"""
from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import BinaryIO

import torch

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16,
              5: torch.bfloat16}
GELU = 3  # CTranslate2 ActivationType::GELU
HEAD_DIM = 64  # every Whisper size uses 64-d heads (for models saved without num_heads)


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 Whisper model this converter understands."""


def _read(f: BinaryIO, fmt: str, path: Path):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError(f"{path}: truncated CTranslate2 file")
    return struct.unpack("<" + fmt, data)[0]


def _read_str(f: BinaryIO, path: Path) -> str:
    n = _read(f, "H", path)
    data = f.read(n)
    if len(data) != n or not data.endswith(b"\0"):
        raise CT2FormatError(f"{path}: corrupt string in CTranslate2 file")
    return data[:-1].decode("utf-8")


def read_ct2_model(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Parse a CTranslate2 ``model.bin``.

    Returns: (spec name, {variable name: tensor}), aliases resolved to their targets' tensors.
    Raises: CT2FormatError for an unknown binary version, dtype, truncated or inconsistent data.
    """
    variables: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        version = _read(f, "I", path)
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version}; supported: "
                                 f"{SUPPORTED_BINARY_VERSIONS}")
        spec = _read_str(f, path)
        _read(f, "I", path)  # spec revision
        for _ in range(_read(f, "I", path)):
            name = _read_str(f, path)
            shape = [_read(f, "I", path) for _ in range(_read(f, "B", path))]
            type_id = _read(f, "B", path)
            if type_id not in CT2_DTYPES:
                raise CT2FormatError(f"{path}: {name}: unknown dtype id {type_id}")
            dtype = CT2_DTYPES[type_id]
            n_bytes = _read(f, "I", path)
            expected = dtype.itemsize * math.prod(shape)
            data = bytearray(f.read(n_bytes))
            if n_bytes != expected or len(data) != n_bytes:
                raise CT2FormatError(f"{path}: {name}: {len(data)} bytes for shape {shape} {dtype}")
            variables[name] = torch.frombuffer(data, dtype=dtype).reshape(shape)
        for _ in range(_read(f, "I", path)):
            alias, target = _read_str(f, path), _read_str(f, path)
            if target not in variables:
                raise CT2FormatError(f"{path}: alias {alias} -> unknown variable {target}")
            variables[alias] = variables[target]
    return spec, variables


class _Variables:
    """Name lookup over CT2 variables that dequantises int8 weights and records what was used."""

    def __init__(self, variables: dict[str, torch.Tensor], path: Path):
        self.vars, self.path, self.used = variables, path, set()

    def get(self, name: str) -> torch.Tensor:
        if name not in self.vars:
            raise CT2FormatError(f"{self.path}: variable {name} missing: not a Whisper model")
        self.used.add(name)
        value = self.vars[name]
        if value.dtype == torch.int8 and f"{name}_scale" in self.vars:
            scale = self.vars[f"{name}_scale"].float()
            self.used.add(f"{name}_scale")
            return value.float() / scale.reshape(-1, *[1] * (value.dim() - 1))
        if not value.is_floating_point():
            raise CT2FormatError(f"{self.path}: {name} is {value.dtype} without a scale")
        return value

    def scalar(self, name: str, default: int) -> int:
        self.used.add(name)
        return int(self.vars[name].item()) if name in self.vars else default


def _ln(v: _Variables, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": v.get(f"{src}/gamma"), f"{dst}.bias": v.get(f"{src}/beta")}


def _linear(v: _Variables, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": v.get(f"{src}/weight"), f"{dst}.bias": v.get(f"{src}/bias")}


def _split(v: _Variables, src: str, dsts: list[str], path: Path) -> dict[str, torch.Tensor]:
    """A fused projection -> one Linear per ``dsts`` name ("key" parts: weight only, zero bias)."""
    weights = v.get(f"{src}/weight").chunk(len(dsts))
    biases = v.get(f"{src}/bias").chunk(len(dsts))
    out = {}
    for dst, w, b in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = w
        if dst.endswith(".key"):
            if b.abs().max() > 0:
                raise CT2FormatError(f"{path}: {src}: non-zero key bias (whisper's key has none)")
        else:
            out[f"{dst}.bias"] = b
    return out


def _block(v: _Variables, src: str, dst: str, cross: bool, path: Path) -> dict[str, torch.Tensor]:
    sd = _ln(v, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    sd |= _split(v, f"{src}/self_attention/linear_0", [f"{dst}.attn.{p}" for p in ("query", "key", "value")],
                 path)
    sd |= _linear(v, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    if cross:
        sd |= _ln(v, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        sd |= _linear(v, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        sd |= _split(v, f"{src}/attention/linear_1", [f"{dst}.cross_attn.{p}" for p in ("key", "value")], path)
        sd |= _linear(v, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    sd |= _ln(v, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    sd |= _linear(v, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    sd |= _linear(v, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    return sd


def _n_layers(variables: dict[str, torch.Tensor], side: str) -> int:
    return len({m.group(1) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))})


def ct2_to_whisper(spec: str, variables: dict[str, torch.Tensor], path: Path) -> dict:
    """Map parsed CT2 Whisper variables to ``{"dims": dict, "model_state_dict": dict}``.

    Raises: CT2FormatError if the spec is not WhisperSpec, a variable is missing, settings differ from
        Whisper's (GELU, pre-norm, unscaled embeddings, tied output projection) or a tensor is left
        unused.
    """
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: spec {spec!r} is not WhisperSpec")
    v = _Variables(variables, path)
    if (v.scalar("decoder/activation", GELU) != GELU or v.scalar("decoder/pre_norm", 1) != 1
            or v.scalar("decoder/scale_embeddings", 0) != 0):
        raise CT2FormatError(f"{path}: decoder settings differ from Whisper's (GELU, pre-norm)")
    n_enc, n_dec = _n_layers(variables, "encoder"), _n_layers(variables, "decoder")
    sd = {
        "encoder.conv1.weight": v.get("encoder/conv1/weight"), "encoder.conv1.bias": v.get("encoder/conv1/bias"),
        "encoder.conv2.weight": v.get("encoder/conv2/weight"), "encoder.conv2.bias": v.get("encoder/conv2/bias"),
        "encoder.positional_embedding": v.get("encoder/position_encodings/encodings"),
        "decoder.token_embedding.weight": v.get("decoder/embeddings/weight"),
        "decoder.positional_embedding": v.get("decoder/position_encodings/encodings"),
    }
    for i in range(n_enc):
        sd |= _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, path)
    sd |= _ln(v, "encoder/layer_norm", "encoder.ln_post")
    for i in range(n_dec):
        sd |= _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, path)
    sd |= _ln(v, "decoder/layer_norm", "decoder.ln")
    if "decoder/projection/weight" in variables and not torch.equal(
            v.get("decoder/projection/weight"), sd["decoder.token_embedding.weight"]):
        raise CT2FormatError(f"{path}: output projection is not tied to the token embedding")
    if "decoder/projection/bias" in variables and v.get("decoder/projection/bias").abs().max() > 0:
        raise CT2FormatError(f"{path}: output projection has a bias (Whisper's has none)")
    unused = [k for k, t in variables.items() if k not in v.used and t.dim() > 0]
    if unused:
        raise CT2FormatError(f"{path}: unmapped tensors (not a plain Whisper model?): {', '.join(unused[:8])}")
    conv1, enc_pos = sd["encoder.conv1.weight"], sd["encoder.positional_embedding"]
    emb, dec_pos = sd["decoder.token_embedding.weight"], sd["decoder.positional_embedding"]
    dims = {
        "n_mels": conv1.shape[1], "n_audio_ctx": enc_pos.shape[0], "n_audio_state": conv1.shape[0],
        "n_audio_head": v.scalar("encoder/num_heads", conv1.shape[0] // HEAD_DIM), "n_audio_layer": n_enc,
        "n_vocab": emb.shape[0], "n_text_ctx": dec_pos.shape[0], "n_text_state": emb.shape[1],
        "n_text_head": v.scalar("decoder/num_heads", emb.shape[1] // HEAD_DIM), "n_text_layer": n_dec,
    }
    return {"dims": dims, "model_state_dict": {k: t.clone().contiguous() for k, t in sd.items()}}


def convert_whisper_ct2(model_bin: Path, out_pt: Path) -> dict:
    """Convert ``model_bin`` and save the openai-whisper checkpoint at ``out_pt`` (atomic).

    Returns: the checkpoint's dims. Raises: FileNotFoundError (absent file), CT2FormatError.
    """
    from utils.io import atomic_path

    if not model_bin.is_file():
        raise FileNotFoundError(f"CTranslate2 model not found: {model_bin}")
    ckpt = ct2_to_whisper(*read_ct2_model(model_bin), model_bin)
    with atomic_path(out_pt) as tmp:
        torch.save(ckpt, tmp)
    return ckpt["dims"]
