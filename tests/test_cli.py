"""The CLI is thin: these tests check wiring, output and the one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bertkit.cli.main import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf"


def test_encode_prints_report_tokens_and_vectors(capsys, minilm_path):
    assert main(["-q", "encode", "The cat sat.", "A cat was sitting.", "--dims", "3"]) == 0
    out = capsys.readouterr().out
    assert "loaded          103" in out and "[CLS] the cat sat . [SEP] a cat was sitting . [SEP]" in out
    assert "cosine(mean A, mean B)" in out


def test_inspect_json(capsys):
    assert main(["inspect", str(FIXTURES / "bert_tiny_classifier"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_parameters"] == 23_554
    assert {v["name"] for v in data["variables"]} >= {"output_weights", "bert/pooler/dense/kernel"}


def test_convert_google_checkpoint_loads_in_transformers(tmp_path, transformers_module, capsys):
    assert main(["-q", "convert", str(FIXTURES / "bert_tiny_pretraining" / "bert_model.ckpt"), str(tmp_path)]) == 0
    assert "wrote BertForPreTraining" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "vocab.txt"}
    model, info = transformers_module.BertForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_convert_bin_to_safetensors(tmp_path, shared_data):
    source = shared_data / "checkpoints" / "camphr-tiny-bert-ja-v1"
    assert main(["-q", "convert", str(source), str(tmp_path)]) == 0
    tensors = load_file(tmp_path / "model.safetensors")
    assert "encoder.layer.0.attention.self.query.weight" in tensors
    assert (tmp_path / "vocab.txt").read_bytes() == (source / "vocab.txt").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["inspect", "/no/such/checkpoint"], "checkpoint not found: /no/such/checkpoint"),
    (["encode", "hi", "--model", "/no/such/dir"], "checkpoint not found"),
])
def test_user_errors_are_one_line_without_traceback(argv, message):
    result = subprocess.run([sys.executable, "-m", "bertkit", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seed_decides_the_initialisation(tmp_path, minilm_path):
    """--seed must reach the new head (and a from-scratch model), not only the data order and
    dropout: before this, every seed fine-tuned from the same classifier init."""
    import torch

    from bertkit.cli.common import load_model
    from bertkit.cli.main import build_parser
    from bertkit.heads import BertForMultipleChoice
    from helpers import google_tiny_config

    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config()))

    def weights(seed: int, *source: str) -> dict[str, torch.Tensor]:
        args = build_parser("run_multiple_choice").parse_args(
            ["run_multiple_choice", "--task=commonsenseqa", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}",
             f"--seed={seed}", *source])
        return dict(load_model(args, BertForMultipleChoice).state_dict())

    for source, name in (([f"--init_checkpoint={minilm_path}"], "classifier.weight"),
                         ([f"--bert_config_file={config}"], "bert.encoder.layer.0.attention.self.query.weight")):
        first, again, other = weights(1, *source), weights(1, *source), weights(2, *source)
        assert torch.equal(first[name], again[name]), f"{source}: the same seed gave a different {name}"
        assert not torch.equal(first[name], other[name]), f"{source}: seeds 1 and 2 gave the same {name}"
    query = "bert.encoder.layer.0.attention.self.query.weight"
    loaded = [weights(seed, f"--init_checkpoint={minilm_path}")[query] for seed in (1, 2)]
    assert torch.equal(*loaded), "weights loaded from a checkpoint must not depend on the seed"
