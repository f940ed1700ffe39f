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

A model too large for one package may come as consecutive byte ranges of ``model.bin`` in several
files (``model.bin.part1``, ``model.bin.part2``, ...): they are read as one stream, in the order
given. When the stream ends inside the variables (parts missing) or the decoder's variables are
incomplete, but the whole audio encoder is there, the result is an **encoder-only** checkpoint:
``{"dims": the five n_audio/n_mels fields, "model_state_dict": encoder.* only, "encoder_only": True,
"missing": why}``. It can embed (Cantor's content features read only the encoder), not transcribe;
``whisper.load_model`` does not take it. CTranslate2 writes variables sorted by name, decoder
before encoder, so a cut-short file usually lacks the encoder and nothing can be made of it.
"""
from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple, Sequence

import torch

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
CT2_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16,
              5: torch.bfloat16}
GELU = 3  # CTranslate2 ActivationType::GELU
HEAD_DIM = 64  # every Whisper size uses 64-d heads (for models saved without num_heads)


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 Whisper model this converter understands."""


class _Truncated(CT2FormatError):
    """The byte stream ended early."""


class _MissingVariable(CT2FormatError):
    """A variable the Whisper mapping needs (``.name``) is not in the file."""

    def __init__(self, path: Path, name: str):
        super().__init__(f"{path}: variable {name} missing: not a Whisper model")
        self.name = name


class _ConcatenatedFiles:
    """Read-only binary stream over several files, one after another (the parts of one model.bin)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths, self._index, self._file = list(paths), 0, None

    def __enter__(self) -> "_ConcatenatedFiles":
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0 and self._index < len(self.paths):
            if self._file is None:
                self._file = open(self.paths[self._index], "rb")
            data = self._file.read(n)
            chunks.append(data)
            n -= len(data)
            if n > 0:  # this part is used up
                self._file.close()
                self._file, self._index = None, self._index + 1
        return b"".join(chunks)


def _read(f: BinaryIO, fmt: str, path: Path):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise _Truncated(f"{path}: truncated CTranslate2 file")
    return struct.unpack("<" + fmt, data)[0]


def _read_str(f: BinaryIO, path: Path) -> str:
    n = _read(f, "H", path)
    data = f.read(n)
    if len(data) != n:
        raise _Truncated(f"{path}: truncated CTranslate2 file")
    if not data.endswith(b"\0"):
        raise CT2FormatError(f"{path}: corrupt string in CTranslate2 file")
    return data[:-1].decode("utf-8")


class CT2Model(NamedTuple):
    """A parsed model.bin: spec name, {variable name: tensor}, and None when the whole file was read
    or a sentence saying where it ended early."""

    spec: str
    variables: dict[str, torch.Tensor]
    truncated: str | None


def read_ct2_model(paths: Path | Sequence[Path]) -> CT2Model:
    """Parse a CTranslate2 ``model.bin``, or its consecutive parts read as one stream.

    A stream that ends inside the variables or aliases keeps every variable read whole before the
    end (``truncated`` says where it ended); aliases are resolved to their targets' tensors.
    Raises: CT2FormatError for an unknown binary version or dtype, inconsistent data, or a stream
        that ends before the first variable.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    path = Path(paths[0]) if len(paths) == 1 else Path(" + ".join(str(p) for p in paths))
    variables: dict[str, torch.Tensor] = {}
    with _ConcatenatedFiles(paths) as f:
        version = _read(f, "I", path)
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version}; supported: "
                                 f"{SUPPORTED_BINARY_VERSIONS}")
        spec = _read_str(f, path)
        _read(f, "I", path)  # spec revision
        n_variables = _read(f, "I", path)
        name = None  # of the variable being read, for the message when the stream ends inside it
        try:
            for _ in range(n_variables):
                name = None
                name = _read_str(f, path)
                shape = [_read(f, "I", path) for _ in range(_read(f, "B", path))]
                type_id = _read(f, "B", path)
                if type_id not in CT2_DTYPES:
                    raise CT2FormatError(f"{path}: {name}: unknown dtype id {type_id}")
                dtype = CT2_DTYPES[type_id]
                n_bytes = _read(f, "I", path)
                expected = dtype.itemsize * math.prod(shape)
                if n_bytes != expected:
                    raise CT2FormatError(f"{path}: {name}: {n_bytes} bytes for shape {shape} {dtype}")
                data = bytearray(f.read(n_bytes))
                if len(data) != n_bytes:
                    raise _Truncated(f"{path}: truncated CTranslate2 file")
                variables[name] = torch.frombuffer(data, dtype=dtype).reshape(shape)
            for _ in range(_read(f, "I", path)):
                alias, target = _read_str(f, path), _read_str(f, path)
                if target not in variables:
                    raise CT2FormatError(f"{path}: alias {alias} -> unknown variable {target}")
                variables[alias] = variables[target]
        except _Truncated:
            where = (f"inside variable {len(variables) + 1} of {n_variables}" + (f" ({name})" if name else "")
                     if len(variables) < n_variables else "in the aliases")
            return CT2Model(spec, variables, f"the file ends {where}")
    return CT2Model(spec, variables, None)


class _Variables:
    """Name lookup over CT2 variables that dequantises int8 weights and records what was used."""

    def __init__(self, variables: dict[str, torch.Tensor], path: Path):
        self.vars, self.path, self.used = variables, path, set()

    def get(self, name: str) -> torch.Tensor:
        if name not in self.vars:
            raise _MissingVariable(self.path, name)
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


def _layer_count(variables: dict[str, torch.Tensor], side: str, path: Path) -> int:
    """Number of ``{side}/layer_i`` blocks; raises _MissingVariable when the indices have a gap."""
    found = {int(m.group(1)) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    gaps = sorted(set(range(max(found, default=-1) + 1)) - found)
    if gaps:
        raise _MissingVariable(path, f"{side}/layer_{gaps[0]}/*")
    return len(found)


def _encoder(v: _Variables, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The audio encoder's state dict (``encoder.*``) and its dims; raises _MissingVariable."""
    n_enc = _layer_count(v.vars, "encoder", path)
    sd = {
        "encoder.conv1.weight": v.get("encoder/conv1/weight"), "encoder.conv1.bias": v.get("encoder/conv1/bias"),
        "encoder.conv2.weight": v.get("encoder/conv2/weight"), "encoder.conv2.bias": v.get("encoder/conv2/bias"),
        "encoder.positional_embedding": v.get("encoder/position_encodings/encodings"),
    }
    for i in range(n_enc):
        sd |= _block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, path)
    sd |= _ln(v, "encoder/layer_norm", "encoder.ln_post")
    conv1, enc_pos = sd["encoder.conv1.weight"], sd["encoder.positional_embedding"]
    dims = {"n_mels": conv1.shape[1], "n_audio_ctx": enc_pos.shape[0], "n_audio_state": conv1.shape[0],
            "n_audio_head": v.scalar("encoder/num_heads", conv1.shape[0] // HEAD_DIM), "n_audio_layer": n_enc}
    return sd, dims


def _decoder(v: _Variables, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The text decoder's state dict (``decoder.*``) and its dims; raises _MissingVariable, or
    CT2FormatError when its settings are not Whisper's."""
    if (v.scalar("decoder/activation", GELU) != GELU or v.scalar("decoder/pre_norm", 1) != 1
            or v.scalar("decoder/scale_embeddings", 0) != 0):
        raise CT2FormatError(f"{path}: decoder settings differ from Whisper's (GELU, pre-norm)")
    n_dec = _layer_count(v.vars, "decoder", path)
    sd = {"decoder.token_embedding.weight": v.get("decoder/embeddings/weight"),
          "decoder.positional_embedding": v.get("decoder/position_encodings/encodings")}
    for i in range(n_dec):
        sd |= _block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, path)
    sd |= _ln(v, "decoder/layer_norm", "decoder.ln")
    if "decoder/projection/weight" in v.vars and not torch.equal(
            v.get("decoder/projection/weight"), sd["decoder.token_embedding.weight"]):
        raise CT2FormatError(f"{path}: output projection is not tied to the token embedding")
    if "decoder/projection/bias" in v.vars and v.get("decoder/projection/bias").abs().max() > 0:
        raise CT2FormatError(f"{path}: output projection has a bias (Whisper's has none)")
    emb, dec_pos = sd["decoder.token_embedding.weight"], sd["decoder.positional_embedding"]
    dims = {"n_vocab": emb.shape[0], "n_text_ctx": dec_pos.shape[0], "n_text_state": emb.shape[1],
            "n_text_head": v.scalar("decoder/num_heads", emb.shape[1] // HEAD_DIM), "n_text_layer": n_dec}
    return sd, dims


def ct2_to_whisper(model: CT2Model, path: Path) -> dict:
    """Map a parsed CT2 Whisper model to ``{"dims": dict, "model_state_dict": dict}``, or to the
    encoder-only checkpoint (module docstring) when the file ended early or the decoder is incomplete.

    Raises: CT2FormatError if the spec is not WhisperSpec, the audio encoder is incomplete, settings
        differ from Whisper's (GELU, pre-norm, unscaled embeddings, tied output projection) or a tensor
        of the converted part is left unused.
    """
    if model.spec != "WhisperSpec":
        raise CT2FormatError(f"{path}: spec {model.spec!r} is not WhisperSpec")
    v = _Variables(model.variables, path)
    try:
        sd, dims = _encoder(v, path)
    except _MissingVariable as e:
        if model.truncated is None:
            raise
        n = sum(k.startswith("encoder/") for k in model.variables)
        raise CT2FormatError(f"{path}: {model.truncated}, and the audio encoder is incomplete ({n} "
                             f"encoder variables read, {e.name} missing): nothing to embed or "
                             f"transcribe with") from None
    missing = model.truncated
    if missing is None:
        try:
            dec_sd, dec_dims = _decoder(v, path)
            sd, dims = sd | dec_sd, dims | dec_dims
        except _MissingVariable as e:
            missing = f"the decoder is incomplete ({e.name} missing)"
    converted = [k for k in model.variables if missing is None or k.startswith("encoder/")]
    unused = [k for k in converted if k not in v.used and model.variables[k].dim() > 0]
    if unused:
        raise CT2FormatError(f"{path}: unmapped tensors (not a plain Whisper model?): {', '.join(unused[:8])}")
    ckpt = {"dims": dims, "model_state_dict": {k: t.clone().contiguous() for k, t in sd.items()}}
    if missing is not None:
        ckpt |= {"encoder_only": True, "missing": missing}
    return ckpt


def convert_whisper_ct2(model_bin: Path | Sequence[Path], out_pt: Path) -> dict:
    """Convert ``model_bin`` (one file, or the consecutive parts of one) and save the checkpoint at
    ``out_pt`` (atomic): complete, or encoder-only (module docstring).

    Returns: ``{"dims": ..., "encoder_only": bool, "missing": None or why the decoder is left out}``.
    Raises: FileNotFoundError (absent file), CT2FormatError.
    """
    from utils.io import atomic_path

    parts = [Path(model_bin)] if isinstance(model_bin, (str, Path)) else [Path(p) for p in model_bin]
    if not parts:
        raise FileNotFoundError("no CTranslate2 model file given")
    for part in parts:
        if not part.is_file():
            raise FileNotFoundError(f"CTranslate2 model not found: {part}")
    name = parts[0] if len(parts) == 1 else Path(" + ".join(str(p) for p in parts))
    ckpt = ct2_to_whisper(read_ct2_model(parts), name)
    with atomic_path(out_pt) as tmp:
        torch.save(ckpt, tmp)
    return {"dims": ckpt["dims"], "encoder_only": ckpt.get("encoder_only", False),
            "missing": ckpt.get("missing")}
