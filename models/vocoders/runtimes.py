"""Where a vocoder generator runs: torch itself, or its ONNX export (models/vocoders/onnx_export.py)
on ONNX Runtime's CPU provider or OpenVINO's CPU plugin, in fp32 or bfloat16.

Every runtime is a callable: log-mel (B, n_mel, T) float tensor, un-normalised -> waveform
(B, T * hop) float32 tensor on the input's device. ``backend`` and ``precision`` name it.

* torch fp32: eager; torch bf16: ``torch.autocast`` (bfloat16 convolutions, fp32 elsewhere).
* onnxruntime: fp32 only (its CPU provider has no bfloat16 convolution kernels).
* openvino: ``INFERENCE_PRECISION_HINT`` f32 or bf16 (on CPUs with AMX, OpenVINO's own default
  is bf16; Cantor always sets the hint so that "fp32" means fp32).

ONNX Runtime and OpenVINO use ``torch.get_num_threads()`` threads, like torch, and are imported
only when built.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch
from torch import nn

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
ONNX_BACKENDS = ("onnxruntime", "openvino")
INSTALL_HINT = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install openvino"}


class BackendUnavailableError(RuntimeError):
    """A vocoder backend was asked for whose package is not installed (the message says how to
    install it)."""


def installed_backends() -> list[str]:
    """The backends whose packages are importable here (torch always)."""
    return [b for b in BACKENDS if b == "torch" or importlib.util.find_spec(b) is not None]


def check_installed(backend: str) -> None:
    """Raise BackendUnavailableError unless ``backend``'s package is importable."""
    if backend not in installed_backends():
        raise BackendUnavailableError(f"vocoder.backend = {backend}: the {backend} package is not "
                                      f"installed ({INSTALL_HINT[backend]}), or use auto / torch")


class TorchRuntime:
    """The generator in torch (see the module docstring). Args: generator, already on its device;
    precision "fp32" or "bf16"."""

    backend = "torch"

    def __init__(self, generator: nn.Module, precision: str = "fp32"):
        self.generator = generator.eval()
        self.precision = precision
        self.device = next(generator.parameters()).device

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.to(self.device, torch.float32)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            wav = self.generator(x)
        return wav[:, 0].float().to(mel.device)


def _numpy_input(mel: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(mel.detach().to("cpu", torch.float32).numpy())


class OnnxRuntimeRuntime:
    """The ONNX export on ONNX Runtime's CPU execution provider, fp32. Args: onnx_file; threads."""

    backend = "onnxruntime"
    precision = "fp32"

    def __init__(self, onnx_file, threads: int):
        check_installed("onnxruntime")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_file), options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        wav = self.session.run(["wav"], {"mel": _numpy_input(mel)})[0]
        return torch.from_numpy(np.ascontiguousarray(wav[:, 0])).to(mel.device)


class OpenVINORuntime:
    """The ONNX export compiled by OpenVINO for the CPU. Args: onnx_file; threads; precision "fp32"
    or "bf16" (OpenVINO's INFERENCE_PRECISION_HINT)."""

    backend = "openvino"

    def __init__(self, onnx_file, threads: int, precision: str = "fp32"):
        check_installed("openvino")
        import openvino

        self.precision = precision
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(str(onnx_file)), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads})
        self.output = self.compiled.output(0)

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        request = self.compiled.create_infer_request()  # one per call: safe across threads
        wav = request.infer({0: _numpy_input(mel)})[self.output]
        return torch.from_numpy(np.array(wav[:, 0], dtype=np.float32)).to(mel.device)


def make_runtime(backend: str, precision: str, generator: nn.Module, onnx_file=None,
                 threads: int | None = None):
    """Build one runtime.

    Args: backend in :data:`BACKENDS`; precision in :data:`PRECISIONS`; generator (for torch; on
        its device); onnx_file: the export (for onnxruntime / openvino); threads: default
        ``torch.get_num_threads()``.
    Raises: BackendUnavailableError for an uninstalled package; ValueError for onnxruntime with
        bf16 or a missing onnx_file.
    """
    threads = threads or torch.get_num_threads()
    if backend == "torch":
        return TorchRuntime(generator, precision)
    if onnx_file is None:
        raise ValueError(f"the {backend} vocoder backend needs the ONNX export")
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError("ONNX Runtime's CPU provider runs the vocoder in fp32 only")
        return OnnxRuntimeRuntime(onnx_file, threads)
    if backend == "openvino":
        return OpenVINORuntime(onnx_file, threads, precision)
    raise ValueError(f"unknown vocoder backend {backend!r}; known: {', '.join(BACKENDS)}")
