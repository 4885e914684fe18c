"""The header line every benchmark prints first: which CPU (model and the flags that decide the
fast paths), torch's version and threads, and what `dtype="auto"` picks there, so that a table is
never read as if it came from another kind of machine."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertkit.cpu import cpu_info  # noqa: E402
from bertkit.inference.precision import choose_precision  # noqa: E402


def header() -> str:
    auto = choose_precision("auto", "cpu", failed=set())
    return (f"CPU: {cpu_info().summary()}\n"
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; dtype=auto here: {auto}")


def print_header() -> None:
    print(header(), flush=True)
