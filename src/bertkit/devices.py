"""One reading of a device name for every entry point (pipeline, Trainer, the CLI's --device).

torch.device() accepts any backend name torch knows of ("cuda", "mps", "xpu", ...) even when this
build cannot run it, so a typo or a CUDA flag on a CPU-only install would surface later as a
traceback from deep inside the first .to(device). Here it is one line naming the value and what
this machine can use, before anything loads.
"""

from __future__ import annotations

import torch

from bertkit.errors import ConfigError


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str | torch.device | None, *, local_rank: int = 0, what: str | None = "device") -> torch.device:
    """`name` as a torch.device this machine can run; None or "auto": this process's GPU when there
    is one (cuda:LOCAL_RANK under torchrun), else the CPU. `what` names the argument in the error
    (None: the error starts with the value, for argparse, which names the flag itself)."""
    if name is None or (isinstance(name, str) and name.strip().lower() == "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    usable = ", ".join(["auto", *available_devices()])
    given = f"{what}={name!r}" if what else repr(name)
    try:
        device = torch.device(name.strip() if isinstance(name, str) else name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{given} is not a device name; use one of {usable}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{given}: this torch build sees no CUDA GPU "
                              f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not built in'}); "
                              f"use {usable}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{given}: there are {torch.cuda.device_count()} GPU(s); use {usable}")
        return device
    if device.type == "mps" and "mps" in available_devices():
        return device
    raise ConfigError(f"{given} is not available on this machine; use one of {usable}")
