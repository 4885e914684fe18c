"""The CPU bertkit runs on: its model name and the instruction sets that decide the fast paths.

    from bertkit.cpu import cpu_info
    cpu_info().summary()     # "AMD EPYC 7B13 64-Core Processor; avx2 yes, avx512f no, ... ; torch dispatch AVX2"

Read from /proc/cpuinfo on Linux (the kernel's flag names); elsewhere, or where that file cannot be
read, from torch's own dispatch level (`torch.backends.cpu.get_cpu_capability()`), which tells
AVX2 from AVX-512 but nothing about VNNI, bf16 or AMX: those are then taken as absent, so that
nothing chooses a path the CPU may not run natively. Kept below every other layer: the Trainer
(bf16 autocast), the inference precision choice and the benchmarks' headers all read it.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# The flags that decide a fast path, in /proc/cpuinfo's spelling:
#   avx2         fbgemm's int8 kernels (u8 x s8 pairs summed in int16: weights kept to 7 bits)
#   avx512f      wider fp32 kernels
#   avx512_vnni  fbgemm's VNNI int8 kernels (vpdpbusd sums into int32: 8-bit weights cannot saturate)
#   avx_vnni     VNNI in AVX2 encoding (Alder Lake and later clients); fbgemm does not use it
#   avx512_bf16  bf16 dot products (Cooper Lake, Zen 4)
#   amx_bf16     AMX tiles for bf16 (Sapphire Rapids and later Xeons): where bf16 measured fastest
#   amx_int8     AMX tiles for int8 (oneDNN's static quantization; fbgemm's dynamic int8 does not use them)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")

# torch's dispatch level -> the flags it implies (the fallback where /proc/cpuinfo is unreadable).
_CAPABILITY_FLAGS = {"AVX2": ("avx2",), "AVX512": ("avx2", "avx512f")}


@dataclass(frozen=True)
class CpuInfo:
    model: str  # "Intel(R) Xeon(R) Platinum 8481C", "AMD EPYC 7B13 64-Core Processor", ...
    flags: frozenset[str]
    capability: str | None  # torch's CPU dispatch level: DEFAULT, AVX2, AVX512, ...
    source: str  # where the flags came from: the cpuinfo file, or "torch" (dispatch level only)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 computed in hardware (AMX or AVX-512 BF16); without either torch emulates it, ~10x slower."""
        return any(flag in self.flags for flag in NATIVE_BF16)

    def summary(self) -> str:
        """One line for logs and benchmark headers: the model, the relevant flags, torch's dispatch."""
        flags = ", ".join(f"{flag} {'yes' if flag in self.flags else 'no'}" for flag in FLAGS)
        source = "" if self.source != "torch" else " (flags from torch's dispatch level: /proc/cpuinfo unreadable)"
        return f"{self.model}; {flags}; torch dispatch {self.capability or 'unknown'}{source}"

    def as_dict(self) -> dict:
        return {"model": self.model, "flags": {flag: flag in self.flags for flag in FLAGS},
                "torch_capability": self.capability, "source": self.source}


def torch_capability() -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # older torch builds
        return None


def read_cpu_info(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> CpuInfo:
    """The CPU's model and flags from a /proc/cpuinfo-style file; torch's dispatch level where the
    file is missing or has no flags line (macOS, Windows, some containers)."""
    capability = torch_capability()
    model, flags = None, None
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model is None:
                model = value.strip()
            elif key == "flags" and flags is None:
                flags = frozenset(value.split())
            if model is not None and flags is not None:
                break
    except OSError:
        pass
    if flags is None:
        return CpuInfo(model or platform.processor() or platform.machine() or "unknown CPU",
                       frozenset(_CAPABILITY_FLAGS.get(capability or "", ())), capability, "torch")
    return CpuInfo(model or platform.processor() or "unknown CPU", flags, capability, str(cpuinfo))


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU, read once per process."""
    return read_cpu_info()
