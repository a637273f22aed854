"""Where and in what arithmetic torch runs: one resolver for every command, so the same `--device`
and `--precision` are accepted, defaulted and refused the same way everywhere.

Every refusal is a `DeviceError`, which the CLI prints as one line (exit code 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from cctvsr.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # as listed in messages; N is a CUDA device index
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_REDUCED = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: where bf16 autocast is several times faster than fp32 (without them it
    is emulated and several times slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def describe_cpu() -> str:
    """The CPU's name and its bf16 kind (AMX, AVX512-BF16 or none), so a benchmark's saved output
    says which kind of machine its ratios belong to."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU (no /proc/cpuinfo)"
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    kind = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no bf16"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return f"{name} ({kind})"


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when PyTorch can use it, else the CPU; a CUDA device that is not here is
    refused now rather than failing later inside a model."""
    if name == "auto":
        return torch.device("cuda" if _cuda_count() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", name):
        raise DeviceError(f"unknown device {name!r} (choose from {', '.join(DEVICES)})")
    device = torch.device(name)
    if device.type == "cuda":
        count = _cuda_count()
        if count == 0:
            raise DeviceError(f"--device {name}: no CUDA device is usable by this PyTorch build")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def resolve_precision(name: str, device: torch.device, choices: Sequence[str] = PRECISIONS) -> str:
    """A concrete precision (fp32, bf16 or fp16) among `choices`. `auto` is the fastest that keeps
    results close to fp32: fp16 on CUDA where allowed, bf16 on a CPU with native bf16 (emulated
    bf16 is several times slower), fp32 otherwise."""
    if name not in choices:
        raise DeviceError(f"unknown precision {name!r} (choose from {', '.join(choices)})")
    if name == "auto":
        if device.type == "cuda":
            return "fp16" if "fp16" in choices else "fp32"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise DeviceError("fp16 needs CUDA; on CPU use --precision bf16 or fp32")
    return name


def reduced_dtype(precision: str) -> torch.dtype | None:
    """The 16-bit dtype of a resolved precision, None for fp32 (autocast off)."""
    return _REDUCED[precision]


@dataclass(frozen=True)
class Hardware:
    """What torch can run on here, for `cctvsr models`."""

    cpu_native_bf16: bool
    cuda_devices: tuple[str, ...]  # names, by index: cuda:0, cuda:1, ...


def probe_hardware() -> Hardware:
    """The CPU's bf16 support and the CUDA devices PyTorch can use (none without a CUDA build)."""
    return Hardware(cpu_has_native_bf16(), tuple(torch.cuda.get_device_name(i) for i in range(_cuda_count())))


def _cuda_count() -> int:
    """CUDA devices PyTorch can use: none without a CUDA build, driver or GPU."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
