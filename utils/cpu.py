"""What this machine's CPU is and which reduced-precision instructions it has, read from
/proc/cpuinfo (Linux), never assumed.

bfloat16 matrix instructions: ``amx_bf16`` (Intel AMX tiles, Sapphire Rapids and later) and
``avx512_bf16`` (AVX512-BF16: Cooper Lake, Zen 4 and later). Without either, bf16 arithmetic is
emulated and slower than fp32.
"""
from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Flags worth printing beside a benchmark (vector width and bf16 / int8 matrix support).
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", *BF16_FLAGS, "amx_tile", "amx_int8")


def _first_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def _cpuinfo() -> str | None:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name ("model name" of /proc/cpuinfo, else platform.processor(), else "unknown").

    Args: cpuinfo: the text of /proc/cpuinfo (None: read it).
    """
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    name = _first_value(text, "model name") if text else None
    return name or platform.processor() or "unknown"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The instruction-set flags of the first CPU ("flags" of /proc/cpuinfo); None when they cannot
    be read (not Linux), which callers must treat as unknown, not as absent.

    Args: cpuinfo: the text of /proc/cpuinfo (None: read it).
    """
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = _first_value(text, "flags") if text else None
    return frozenset(flags.split()) if flags is not None else None


def native_bf16(flags: frozenset[str] | None) -> bool | None:
    """True when the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16), False when the
    flags say it does not, None when the flags are unknown."""
    if flags is None:
        return None
    return any(f in flags for f in BF16_FLAGS)


def describe_cpu(cpuinfo: str | None = None) -> str:
    """One line: the CPU model and which of :data:`REPORTED_FLAGS` it has, e.g.
    "Intel Xeon (amx_bf16 yes, avx512_bf16 yes, ...)"."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return f"{cpu_model(cpuinfo)} (instruction flags unknown)"
    listed = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in REPORTED_FLAGS)
    return f"{cpu_model(cpuinfo)} ({listed})"
