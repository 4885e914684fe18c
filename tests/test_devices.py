"""resolve_device: one reading of --device / device= for the pipeline, the Trainer and the CLI."""

from __future__ import annotations

import pytest
import torch

from bertkit.devices import resolve_device
from bertkit.errors import ConfigError


def test_auto_and_none_pick_the_gpu_only_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1")


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name, message", [
    ("banana", "device='banana' is not a device name; use one of auto, cpu"),
    ("cuda:x", "is not a device name"),
])
def test_names_torch_does_not_know_are_one_line(name, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):
        resolve_device(name)


def test_cuda_on_a_build_without_a_gpu_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device='cuda': this torch build sees no CUDA GPU.*use auto, cpu"):
        resolve_device("cuda", what="--device")


def test_a_gpu_index_beyond_the_count_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="there are 1 GPU"):
        resolve_device("cuda:3")


def test_the_error_can_start_with_the_value_for_argparse(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^'tpu' is not a device name"):
        resolve_device("tpu", what=None)
