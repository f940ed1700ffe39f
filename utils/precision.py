"""Numeric precision of training: which mixed precision ``train.mixed_precision`` means on this
machine, the fast CUDA math switches, and a guard that runs a numerically delicate function in
float32 inside an autocast region.

``train.mixed_precision`` (accelerate's ``mixed_precision``):

- ``"auto"`` (the default): on a CUDA GPU, ``"bf16"`` where it supports bfloat16 (compute
  capability >= 8.0: A100, H100, RTX 30xx and later), else ``"fp16"`` (with accelerate's gradient
  scaler); on a machine without CUDA (CPU, Apple MPS), ``"no"`` (float32);
- ``"no"``, ``"fp16"``, ``"bf16"``: as given. ``"bf16"`` also works on CPU (torch's CPU autocast),
  which is how the tests run the mixed-precision path; ``"fp16"`` needs CUDA.
"""
from __future__ import annotations

import functools

import torch


def resolve_mixed_precision(choice: str) -> str:
    """accelerate's ``mixed_precision`` for ``train.mixed_precision`` (module doc).

    Returns: "no", "fp16" or "bf16".
    Raises: ValueError for a value other than auto, no, fp16, bf16, or fp16 without CUDA.
    """
    if choice not in ("auto", "no", "fp16", "bf16"):
        raise ValueError(f"train.mixed_precision must be auto, no, fp16 or bf16, got {choice!r}")
    cuda = torch.cuda.is_available()
    if choice == "fp16" and not cuda:
        raise ValueError("train.mixed_precision = fp16 needs a CUDA GPU; use bf16 or no on CPU")
    if choice != "auto":
        return choice
    if not cuda:
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def enable_fast_cuda_math() -> None:
    """TF32 tensor-core matmuls and convolutions (10-bit mantissa inputs, float32 accumulation) and
    cuDNN's autotuner (``cudnn.benchmark``: the fastest convolution algorithm per input shape; the
    length-grouped batches repeat shapes). Affects only float32 work on CUDA GPUs (Ampere and
    later for TF32); a no-op elsewhere."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def float32(fn):
    """Decorator: call ``fn`` with autocast off and every half-precision tensor argument cast to
    float32 (float64 stays float64), so reductions such as means of squared errors or the local variances of SSIM are not
    computed in bfloat16/float16 (8 or 11 significant bits) inside a mixed-precision forward. Outside
    autocast, float32 inputs pass through unchanged."""

    def cast(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(torch.promote_types(x.dtype, torch.float32))
        return x

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in (*args, *kwargs.values())
                       if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper
