"""Resuming from damaged checkpoints, and a disk that fills while one is written.

A damaged newest checkpoint is skipped, with one warning naming it and the fault, for the newest
intact one, and the run ends with an uninterrupted run's weights; `resume="strict"`
(`--resume=strict`) stops with a CheckpointError before any step. A full disk while saving is a
CheckpointError that keeps the previous checkpoint whole.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertkit.cli.main import main
from bertkit.data.batching import FeatureDataset
from bertkit.errors import CheckpointError
from bertkit.heads import BertForSequenceClassification
from bertkit.training import Trainer, TrainingArguments
from bertkit.training import checkpoints as checkpoints_module
from bertkit.training import trainer as trainer_module
from helpers import make_examples, tiny_config

ROOT = Path(__file__).resolve().parents[2]
TRAINER_LOGGER = "bertkit.training.trainer"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: every run here on one thread


def make_trainer(output_dir, model=None, **overrides):
    # 24 examples in batches of 8, 2 epochs: 6 steps; checkpoints at steps 2, 4 and 6. Dropout is
    # on, so a resumed run must restore the RNG states as well to end with the same weights.
    if model is None:
        torch.manual_seed(0)
        model = BertForSequenceClassification(tiny_config(num_labels=2))
    values = dict(output_dir=str(output_dir), learning_rate=1e-3, num_train_epochs=2, train_batch_size=8,
                  save_checkpoints_steps=2, progress=False, tensorboard=False, plot=False, seed=1)
    values.update(overrides)
    return Trainer(model, TrainingArguments(**values), FeatureDataset(make_examples(24, 1)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted run: its final weights, and its checkpoints to damage."""
    path = tmp_path_factory.mktemp("finished")
    make_trainer(path).train()
    return path


@pytest.fixture
def interrupted(finished, tmp_path):
    """The finished run as if killed after its step-4 checkpoint: checkpoint-2 and -4, no model."""
    path = tmp_path / "run"
    shutil.copytree(finished, path)
    shutil.rmtree(path / "checkpoint-6")
    for name in ("model.safetensors", "config.json"):
        (path / name).unlink()
    return path


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def drop_key(checkpoint: Path, key: str) -> None:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    del state[key]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))


def other_model(checkpoint: Path, **config) -> None:
    BertForSequenceClassification(tiny_config(num_labels=2, **config)).save_pretrained(checkpoint)


# Each damage, and what the message says of it.
DAMAGES = {
    "truncated-weights": (lambda c: truncate(c / "model.safetensors"), "model.safetensors cannot be read"),
    "truncated-optimizer": (lambda c: truncate(c / "optimizer.pt"), "optimizer.pt cannot be read"),
    "broken-trainer-state": (lambda c: (c / "trainer_state.json").write_text('{"global_step": 4,'),
                             "trainer_state.json cannot be read"),
    "missing-key": (lambda c: drop_key(c, "batch"), "trainer_state.json lacks the key(s) batch"),
    "missing-file": (lambda c: (c / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    "other-hidden-size": (lambda c: other_model(c, hidden_size=16, num_attention_heads=2),
                          "bert.embeddings.word_embeddings.weight is [99, 16] (the model's: [99, 32])"),
    "other-layer-count": (lambda c: other_model(c, num_hidden_layers=3), "unexpected bert.encoder.layer.2."),
}


def damaged_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == TRAINER_LOGGER and r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(interrupted, finished, caplog, damage):
    harm, problem = DAMAGES[damage]
    harm(interrupted / "checkpoint-4")
    caplog.set_level(logging.INFO, logger=TRAINER_LOGGER)
    # Another initialisation, to show the weights come from the checkpoint.
    torch.manual_seed(5)
    result = make_trainer(interrupted, BertForSequenceClassification(tiny_config(num_labels=2))).train(resume=True)
    assert result.global_step == 6
    [warning] = damaged_warnings(caplog)
    assert f"checkpoint {interrupted / 'checkpoint-4'} is damaged: " in warning and problem in warning
    assert f"resuming from {interrupted / 'checkpoint-2'} instead" in warning
    assert f"Resuming from {interrupted / 'checkpoint-2'}: step 2" in caplog.text
    finished_weights, resumed_weights = (load_file(str(p / "model.safetensors")) for p in (finished, interrupted))
    assert finished_weights.keys() == resumed_weights.keys()
    for name, tensor in finished_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("damage", DAMAGES)
def test_strict_resume_stops_on_a_damaged_newest_checkpoint(interrupted, damage):
    harm, problem = DAMAGES[damage]
    harm(interrupted / "checkpoint-4")
    trainer = make_trainer(interrupted)
    before = {name: tensor.clone() for name, tensor in trainer.model.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        trainer.train(resume="strict")
    message = str(error.value)
    assert message.startswith(f"checkpoint {interrupted / 'checkpoint-4'} is damaged: ") and problem in message
    assert "--resume=true" in message and "weights_only=False" not in message
    assert trainer.state.global_step == 0 and not (interrupted / "model.safetensors").exists()
    assert all(torch.equal(before[name], tensor) for name, tensor in trainer.model.state_dict().items())


def test_an_explicit_damaged_checkpoint_is_an_error_and_no_intact_one_starts_over(interrupted, caplog):
    truncate(interrupted / "checkpoint-2" / "model.safetensors")
    with pytest.raises(CheckpointError, match="checkpoint-2 is damaged: model.safetensors cannot be read"):
        make_trainer(interrupted).train(resume=interrupted / "checkpoint-2")
    (interrupted / "checkpoint-4" / "optimizer.pt").write_bytes(b"")
    caplog.set_level(logging.INFO, logger=TRAINER_LOGGER)
    assert make_trainer(interrupted).train(resume=True).global_step == 6
    warnings = damaged_warnings(caplog)
    assert len(warnings) == 2 and all("training starts from step 0" in w for w in warnings)
    assert "optimizer.pt cannot be read (0 bytes" in warnings[0] and "checkpoint-2 is damaged" in warnings[1]


def test_the_resume_flag_takes_strict_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["-q", "run_classifier", f"--init_checkpoint={ROOT / 'tests/fixtures/tf/bert_tiny_classifier'}",
            "--task_name=MRPC", f"--data_dir={ROOT / 'examples/data/mrpc_sample'}", "--max_seq_length=32",
            "--cache_dir=none", "--do_train", "--max_steps=2", "--train_batch_size=8", "--max_train_examples=16",
            "--save_checkpoints_steps=1", "--no_progress", f"--output_dir={out}"]
    assert main(argv) == 0
    truncate(out / "checkpoint-2" / "model.safetensors")
    assert main([*argv, "--resume=strict"]) == 2
    err = capsys.readouterr().err
    assert f"bertkit run_classifier: error: checkpoint {out / 'checkpoint-2'} is damaged: model.safetensors" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit, match="2"):  # argparse's usage error
        main([*argv, "--resume=maybe"])
    assert "expected true, false or strict, got 'maybe'" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0  # from checkpoint-1, with a warning


# ---------------------------------------------------------------------------------------------
# A full disk.


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        if "checkpoint-4" in str(file) and str(file).endswith("optimizer.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(trainer_module.torch, "save", save)
    trainer = make_trainer(tmp_path, save_total_limit=1)
    with pytest.raises(CheckpointError) as error:
        trainer.train()
    assert str(error.value) == (f"no space left on device writing {tmp_path / 'checkpoint-4'}; the previous checkpoint "
                                f"{tmp_path / 'checkpoint-2'} is kept; free space or set --output_dir elsewhere")
    # Nothing half-written is left, and the previous checkpoint still resumes.
    assert sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name) == ["checkpoint-2"]
    monkeypatch.undo()
    assert make_trainer(tmp_path).train(resume="strict").global_step == 6


def test_a_full_disk_is_told_from_other_write_errors(tmp_path):
    is_full = checkpoints_module._is_disk_full
    assert is_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    # safetensors quotes the OS message; torch.save's RuntimeError hides it behind the free space.
    assert is_full(Exception("Error while serializing: I/O error: No space left on device (os error 28)"), tmp_path)
    assert not is_full(RuntimeError("unexpected pos 704 vs 598"), tmp_path)  # this disk has room
    assert not is_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
