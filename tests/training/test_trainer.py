"""The Trainer on tiny models: outputs, accumulation, bf16, NaN stops, every head, exact resume
(in-process and after a real SIGKILL), and DistributedDataParallel under torchrun, also with
parameters that a step leaves without a gradient (LayerDrop, no NSP loss)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertkit.data.batching import FeatureDataset, PaddingCollator
from bertkit.errors import CheckpointError, ConfigError
from bertkit.heads import (BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                           BertForSequenceClassification, BertForTokenClassification)
from bertkit.training import Trainer, TrainingArguments, TrainingError
from bertkit.training.logging import read_metrics
from bertkit.training.optim import linear_lambda
from bertkit.training import trainer as trainer_module
from bertkit.training.trainer import cpu_has_native_bf16
from helpers import make_examples, tiny_config

TESTS_DIR = Path(__file__).resolve().parents[1]
# Timings vary from run to run; everything else a run logs must repeat exactly.
TIMING_KEYS = ("steps_per_second", "examples_per_second")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: every run here on one thread


# The builders below are also pasted into the script that the subprocess tests run.


def make_model(seed=0, dropout=0.1, layerdrop=0.0, head=BertForSequenceClassification):
    torch.manual_seed(seed)
    return head(tiny_config(num_labels=2, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                            layerdrop=layerdrop))


def pretraining_examples(examples):
    """Examples for BertForPreTraining: the second token masked, the class as the NSP label."""
    return [{**e, "labels": [-100, e["input_ids"][1]] + [-100] * (len(e["input_ids"]) - 2),
             "next_sentence_label": e["labels"]} for e in examples]


def make_args(output_dir, **overrides):
    # 44 examples in batches of 8: 6 batches (the last one of 4) and 6 steps per epoch.
    values = dict(output_dir=str(output_dir), learning_rate=1e-3, num_train_epochs=2, train_batch_size=8,
                  eval_batch_size=8, logging_steps=2, save_checkpoints_steps=None, progress=False, seed=1)
    values.update(overrides)
    return TrainingArguments(**values)


def compute_accuracy(predictions, labels):
    return {"accuracy": float((predictions.argmax(-1) == labels).mean())}


def make_trainer(output_dir, model=None, collate_fn=None, **overrides):
    return Trainer(model or make_model(), make_args(output_dir, **overrides), FeatureDataset(make_examples(44, 1)),
                   FeatureDataset(make_examples(21, 2)), collate_fn=collate_fn, compute_metrics=compute_accuracy)


def weights(directory):
    return load_file(str(Path(directory) / "model.safetensors"))


def assert_same_weights(a, b, atol=0.0):
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


def read_results(directory):
    lines = (Path(directory) / "eval_results.txt").read_text().splitlines()
    return {key: float(value) for key, value in (line.split(" = ") for line in lines)}


def logged(directory):
    records = read_metrics(Path(directory) / "metrics.jsonl")
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# ---------------------------------------------------------------------------------------------


def test_training_writes_googles_results_logs_checkpoints_and_the_model(tmp_path):
    trainer = make_trainer(tmp_path, save_checkpoints_steps=4, save_total_limit=2)
    result = trainer.train()
    assert result.global_step == 12
    text = (tmp_path / "eval_results.txt").read_text()
    assert [line.split(" = ")[0] for line in text.splitlines()] == ["eval_accuracy", "eval_loss", "global_step", "loss"]
    assert "global_step = 12\n" in text

    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == list(range(2, 13, 2))
    assert train[-1]["loss"] < train[0]["loss"]
    multiplier = linear_lambda(warmup=1, total=12)  # int(12 * 0.1) warmup steps
    for r in train:  # the logged rate is the one step r["step"] (1-based) used
        assert r["learning_rate"] == pytest.approx(1e-3 * multiplier(r["step"] - 1))
    assert [(r["step"], r["epoch"]) for r in records if r["event"] == "eval"] == [(6, 1.0), (12, 2.0)]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    # save_total_limit=2 keeps checkpoint-8 and -12; each loads without arbitrary pickles.
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-8"]
    checkpoint = tmp_path / "checkpoint-8"
    assert {p.name for p in checkpoint.iterdir()} == {"config.json", "model.safetensors", "optimizer.pt",
                                                      "scheduler.pt", "rng_state_0.pt", "trainer_state.json"}
    for name in ("optimizer.pt", "scheduler.pt", "rng_state_0.pt"):
        torch.load(checkpoint / name, weights_only=True)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert (state["global_step"], state["epoch"], state["batch"]) == (8, 1, 2)
    assert not list(tmp_path.glob(".checkpoint-*"))

    # The final model is in output_dir, in HF layout, and is the trained one.
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = PaddingCollator()(make_examples(5, 3))
    trainer.model.eval()
    torch.testing.assert_close(reloaded(**batch).logits, trainer.model(**batch).logits)


def test_default_logging_draws_about_20_points(tmp_path):
    """The quick start trains 75 steps: logging every 50 steps would leave 2 points on its loss curve."""
    make_trainer(tmp_path, max_steps=75, logging_steps=None, tensorboard=False, plot=False).train()
    train = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert [r["step"] for r in train] == list(range(3, 76, 3))  # 75 // 20 = every 3 steps: 25 points


def test_evaluate_and_predict(tmp_path):
    trainer = make_trainer(tmp_path)
    results = trainer.evaluate(prefix="dev")
    assert set(results) == {"dev_accuracy", "dev_loss", "loss", "global_step"}
    assert (tmp_path / "dev_results.txt").is_file()
    output = trainer.predict(FeatureDataset(make_examples(21, 2)))
    assert output.predictions.shape == (21, 2)
    assert output.label_ids.tolist() == [e["labels"] for e in make_examples(21, 2)]
    assert output.metrics["predict_accuracy"] == results["dev_accuracy"]
    model = trainer.model.eval()
    with torch.no_grad():  # dataset order, one example at a time
        expected = [model(**PaddingCollator()([e])).logits[0].numpy() for e in make_examples(21, 2)]
    np.testing.assert_allclose(output.predictions, np.stack(expected), atol=1e-5)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    common = dict(group_by_length=False, num_train_epochs=1, eval_steps=None)
    make_trainer(tmp_path / "big", make_model(dropout=0.0), train_batch_size=8, **common).train()
    make_trainer(tmp_path / "accumulated", make_model(dropout=0.0), train_batch_size=4,
                 gradient_accumulation_steps=2, **common).train()
    assert_same_weights(tmp_path / "big", tmp_path / "accumulated", atol=1e-6)


def test_bf16_autocast(tmp_path):
    trainer = make_trainer(tmp_path, bf16=True, num_train_epochs=1)
    result = trainer.train()
    assert np.isfinite(result.training_loss) and np.isfinite(result.metrics["eval_loss"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f", False), ("avx512f avx512_bf16", True),
                                           ("amx_bf16 amx_tile", True)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is None


def test_bf16_on_a_cpu_without_bf16_instructions_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        make_trainer(tmp_path / "bf16", bf16=True)
    assert "several times slower than fp32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        make_trainer(tmp_path / "fp32", bf16=False)
    assert "bf16" not in caplog.text


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_is_on_only_with_native_bf16(tmp_path, monkeypatch, caplog, native):
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        trainer = make_trainer(tmp_path, bf16="auto")
    assert trainer.bf16 is native and "slower than fp32" not in caplog.text
    assert trainer._autocast().fast_dtype == torch.bfloat16 and trainer._autocast()._enabled is native
    assert trainer_module.resolve_bf16(True, torch.device("cpu")) is True
    with pytest.raises(ConfigError, match="bf16='sometimes'"):
        trainer_module.resolve_bf16("sometimes", torch.device("cpu"))


@pytest.mark.parametrize("value, parsed", [([], False), (["--bf16"], True), (["--bf16", "auto"], "auto"),
                                           (["--bf16=false"], False), (["--bf16", "TRUE"], True)])
def test_bf16_flag(tmp_path, value, parsed):
    from bertkit.cli.main import build_parser

    args = build_parser("run_classifier").parse_args(["run_classifier", "--task_name=MRPC", f"--data_dir={tmp_path}",
                                                      f"--output_dir={tmp_path}", *value])
    assert args.bf16 == parsed


class Crash(Exception):
    pass


class FaultAt(BertForSequenceClassification):
    """make_model()'s model, broken from its `at`-th training forward on: a NaN loss, or a crash."""

    def __init__(self, at, fault, dropout=0.1):
        torch.manual_seed(0)  # as make_model(), so the same initial weights
        super().__init__(tiny_config(num_labels=2, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout))
        self.at, self.fault, self.calls = at, fault, 0

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        if self.training:
            self.calls += 1
            if self.calls >= self.at and self.fault == "crash":
                raise Crash
            if self.calls >= self.at:
                output.loss = output.loss * float("nan")
        return output


def test_nan_loss_stops_naming_the_step_the_fix_and_the_checkpoint(tmp_path):
    model = FaultAt(6, "nan")
    trainer = make_trainer(tmp_path, model, save_checkpoints_steps=2)
    with pytest.raises(TrainingError) as error:
        trainer.train()
    message = str(error.value)
    assert "loss is nan at optimizer step 6" in message
    assert "lower learning_rate" in message and "fp32" in message
    assert str(tmp_path / "checkpoint-4") in message
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "model.safetensors").exists()
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN step was not applied


@pytest.mark.parametrize("head", ["token", "multiple_choice", "qa", "pretraining"])
def test_every_head_trains_and_predicts(tmp_path, head):
    config = tiny_config(num_labels=3)
    examples, model, label_names, eval_step = [], None, ("labels",), None
    for i, length in enumerate([5, 9, 3, 7, 6, 4]):
        ids = [(i * 7 + j) % 98 + 1 for j in range(length)]
        if head == "token":
            examples.append({"input_ids": ids, "labels": [j % 3 for j in range(length)]})
        elif head == "multiple_choice":
            examples.append({"input_ids": [ids, ids[::-1], ids[1:]],
                             "attention_mask": [[1] * length] * 2 + [[1] * (length - 1)], "labels": i % 3})
        elif head == "qa":
            examples.append({"input_ids": ids, "start_positions": 1, "end_positions": 2})
        else:
            examples.append({"input_ids": ids, "labels": [-100, ids[1]] + [-100] * (length - 2),
                             "next_sentence_label": i % 2})
    if head == "token":
        model = BertForTokenClassification(config)
    elif head == "multiple_choice":
        model = BertForMultipleChoice(config)
    elif head == "qa":
        model = BertForQuestionAnswering(config)
        label_names, eval_step = ("start_positions", "end_positions"), lambda o, b: (o.start_logits, o.end_logits)
    else:
        model = BertForPreTraining(config)
        label_names, eval_step = ("labels", "next_sentence_label"), lambda o, b: o.seq_relationship_logits
    seen = {}

    def compute_metrics(predictions, labels):
        seen["predictions"], seen["labels"] = predictions, labels
        return {"count": len(labels[0] if isinstance(labels, tuple) else labels)}

    args = make_args(tmp_path, num_train_epochs=1, train_batch_size=2, eval_batch_size=4, label_names=label_names)
    trainer = Trainer(model, args, FeatureDataset(examples), FeatureDataset(examples), compute_metrics=compute_metrics,
                      eval_step=eval_step)
    result = trainer.train()
    assert result.global_step == 3 and result.metrics["eval_count"] == 6
    predictions = seen["predictions"]
    if head == "token":  # eval batches padded to 9 and 6 tokens, concatenated with -100 padding
        assert predictions.shape == (6, 9, 3) and (predictions[4:, 6:] == -100).all()
        assert seen["labels"].shape == (6, 9) and seen["labels"][2].tolist() == [0, 1, 2] + [-100] * 6
    elif head == "multiple_choice":
        assert predictions.shape == (6, 3)
    elif head == "qa":
        assert isinstance(predictions, tuple) and predictions[0].shape == (6, 9) and len(seen["labels"]) == 2
    else:
        assert predictions.shape == (6, 2) and seen["labels"][1].tolist() == [0, 1, 0, 1, 0, 1]
    # evaluate() returns the predictions it scored, and takes a metric for the dataset it is given.
    assert _as_list(result.metrics.predictions) == _as_list(predictions)
    again = trainer.evaluate(FeatureDataset(examples[:2]), prefix="test",
                             compute_metrics=lambda p, labels: {"rows": len(labels[0] if isinstance(labels, tuple) else labels)})
    assert again["test_rows"] == 2 and (tmp_path / "test_results.txt").is_file()


def _as_list(value):
    return [v.tolist() for v in value] if isinstance(value, tuple) else value.tolist()


def test_argument_and_input_errors(tmp_path):
    with pytest.raises(ConfigError, match="learning_rate must be positive"):
        make_args(tmp_path, learning_rate=0)
    with pytest.raises(ConfigError, match="logging_steps must be None or at least 1"):
        make_args(tmp_path, logging_steps=0)
    with pytest.raises(ConfigError, match="scheduler 'step'"):
        make_args(tmp_path, scheduler="step")
    with pytest.raises(ConfigError, match="pad_to_max_length needs max_seq_length"):
        make_args(tmp_path, pad_to_max_length=True)
    with pytest.raises(ConfigError, match="needs a train_dataset"):
        Trainer(make_model(), make_args(tmp_path)).train()
    unlabeled = FeatureDataset([{"input_ids": [1, 2, 3]}] * 4)
    with pytest.raises(ConfigError, match="no loss.*labels"):
        Trainer(make_model(), make_args(tmp_path), unlabeled).train()


# ---------------------------------------------------------------------------------------------
# Resuming.


@pytest.mark.parametrize("save_steps, accumulation", [(4, 1), (6, 1), (2, 2)],
                         ids=["mid-epoch", "epoch-end", "mid-epoch-accumulating"])
def test_resume_equals_an_uninterrupted_run(tmp_path, save_steps, accumulation):
    # Dropout is on: the resumed run must restore the RNG to draw the same masks.
    settings = dict(save_checkpoints_steps=save_steps, gradient_accumulation_steps=accumulation)
    full = make_trainer(tmp_path / "full", **settings).train()
    with pytest.raises(Crash):  # in the 9th batch: epoch 1, after the checkpoint
        make_trainer(tmp_path / "resumed", FaultAt(9, "crash"), **settings).train()
    assert (tmp_path / "resumed" / f"checkpoint-{save_steps}").is_dir()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    # Another initialisation, to show the weights come from the checkpoint.
    resumed = make_trainer(tmp_path / "resumed", make_model(seed=5), **settings).train(resume=True)
    assert_same_weights(tmp_path / "full", tmp_path / "resumed")
    assert read_results(tmp_path / "resumed") == read_results(tmp_path / "full")
    assert logged(tmp_path / "resumed") == logged(tmp_path / "full")
    assert resumed.training_loss == full.training_loss


def test_resume_at_the_last_step_does_not_repeat_the_evaluation(tmp_path):
    make_trainer(tmp_path, save_checkpoints_steps=6, num_train_epochs=1).train()
    before = logged(tmp_path)
    (tmp_path / "model.safetensors").unlink()  # as if killed after the last checkpoint
    assert make_trainer(tmp_path, num_train_epochs=1).train(resume=True).global_step == 6
    assert logged(tmp_path) == before and (tmp_path / "model.safetensors").is_file()


def test_resume_continues_layerdrops_draws(tmp_path):
    """The Trainer seeds LayerDrop's generator from its seed (not the model's) and checkpoints it."""
    settings = dict(num_train_epochs=1, save_checkpoints_steps=3)
    make_trainer(tmp_path / "full", make_model(dropout=0.0, layerdrop=0.5), **settings).train()
    shutil.copytree(tmp_path / "full", tmp_path / "resumed", ignore=shutil.ignore_patterns("checkpoint-6"))
    (tmp_path / "resumed" / "model.safetensors").unlink()
    make_trainer(tmp_path / "resumed", make_model(seed=5, dropout=0.0, layerdrop=0.5), **settings).train(resume=True)
    assert_same_weights(tmp_path / "full", tmp_path / "resumed")


def test_resume_refuses_a_different_batch_layout(tmp_path):
    make_trainer(tmp_path, save_checkpoints_steps=4, num_train_epochs=1).train()
    with pytest.raises(CheckpointError, match="6 batches per epoch, this run has 3.*train_batch_size"):
        make_trainer(tmp_path, save_checkpoints_steps=4, train_batch_size=16).train(resume=True)
    with pytest.raises(CheckpointError, match="not a complete Trainer checkpoint"):
        make_trainer(tmp_path).train(resume=tmp_path / "nowhere")


SCRIPT = '''
import json, logging, sys, time

import torch

sys.path.insert(0, {tests_dir!r})
from bertkit.data.batching import FeatureDataset, PaddingCollator
from bertkit.heads import BertForPreTraining, BertForSequenceClassification
from bertkit.training import Trainer, TrainingArguments
from helpers import make_examples, tiny_config

{builders}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    output_dir, options = sys.argv[1], json.loads(sys.argv[2])
    collate = PaddingCollator()

    def collate_fn(examples):  # a slow run gives the test time to kill it between checkpoints
        time.sleep(options["delay"])
        return collate(examples)

    model = make_model(dropout=options["dropout"], layerdrop=options["layerdrop"])
    train, evaluation = make_examples(44, 1), FeatureDataset(make_examples(21, 2))
    if options["next_sentence_weight"] is not None:
        model = make_model(dropout=options["dropout"], layerdrop=options["layerdrop"], head=BertForPreTraining)
        model.next_sentence_weight = options["next_sentence_weight"]
        train, evaluation = pretraining_examples(train), None
    trainer = Trainer(model, make_args(output_dir, **options["args"]), FeatureDataset(train), evaluation,
                      collate_fn=collate_fn, compute_metrics=compute_accuracy)
    trainer.train(resume=options["resume"])
'''


@pytest.fixture
def script(tmp_path):
    builders = "\n\n".join(inspect.getsource(f) for f in (make_model, pretraining_examples, make_args,
                                                            compute_accuracy))
    path = tmp_path / "train_tiny.py"
    path.write_text(SCRIPT.format(tests_dir=str(TESTS_DIR), builders=builders))
    return path


def launch(command, output_dir, delay=0.0, dropout=0.1, resume=False, layerdrop=0.0, next_sentence_weight=None,
           **args):
    options = {"delay": delay, "dropout": dropout, "resume": resume, "layerdrop": layerdrop,
               "next_sentence_weight": next_sentence_weight, "args": args}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*command, str(output_dir), json.dumps(options)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=120):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path, script):
    python = [sys.executable, str(script)]
    settings = dict(save_checkpoints_steps=4, plot=False, tensorboard=False)  # both cost seconds per process
    uninterrupted = launch(python, tmp_path / "full", **settings)
    killed = launch(python, tmp_path / "killed", delay=0.05, **settings)
    deadline = time.monotonic() + 90
    while not (tmp_path / "killed" / "checkpoint-4").exists():
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # killed mid-training, not after

    output = finish(launch(python, tmp_path / "killed", resume=True, **settings))
    assert "Resuming from" in output and "checkpoint-" in output
    finish(uninterrupted)
    assert_same_weights(tmp_path / "killed", tmp_path / "full")
    assert read_results(tmp_path / "killed") == read_results(tmp_path / "full")
    assert logged(tmp_path / "killed") == logged(tmp_path / "full")


def test_two_processes_under_torchrun_equal_one_with_the_same_global_batch(tmp_path, script):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    python = [sys.executable, str(script)]
    # Global batch 8 (4 per process), length-grouped; 21 eval examples leave the shards uneven.
    settings = dict(dropout=0.0, eval_steps=4, save_checkpoints_steps=6, plot=False)
    distributed = launch(torchrun, tmp_path / "ddp", **settings)
    single = launch(python, tmp_path / "single", **settings)
    finish(single)
    finish(distributed)
    assert_same_weights(tmp_path / "ddp", tmp_path / "single", atol=1e-5)
    ddp, one = read_results(tmp_path / "ddp"), read_results(tmp_path / "single")
    assert ddp.keys() == one.keys() and ddp["eval_accuracy"] == one["eval_accuracy"]
    assert all(ddp[k] == pytest.approx(one[k], abs=1e-5) for k in ddp)
    # Only rank 0 writes: one line per event, one TensorBoard file, one RNG state per process.
    ddp_log, one_log = logged(tmp_path / "ddp"), logged(tmp_path / "single")
    assert [(r["event"], r["step"]) for r in ddp_log] == [(r["event"], r["step"]) for r in one_log]
    for a, b in zip(ddp_log, one_log):
        assert all(a[k] == pytest.approx(b[k], abs=1e-5) for k in a if k != "event")
    assert len(list((tmp_path / "ddp" / "tensorboard").iterdir())) == 1
    assert {p.name for p in (tmp_path / "ddp" / "checkpoint-12").glob("rng_state_*")} == {"rng_state_0.pt",
                                                                                        "rng_state_1.pt"}


def test_layerdrop_and_no_nsp_loss_under_torchrun_equal_one_process(tmp_path, script):
    """Steps that leave parameters without a gradient: LayerDrop skips layers (the same ones on
    both processes, or the weights would differ from one process's), and with NSP weight 0 the
    pooler and NSP classifier get none. DDP must be told to look for them, and must not take the
    NSP logits the model still returns for a use of those parameters."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    python = [sys.executable, str(script)]
    settings = dict(dropout=0.0, layerdrop=0.5, next_sentence_weight=0.0, max_steps=6, plot=False, tensorboard=False)
    distributed = launch(torchrun, tmp_path / "ddp", **settings)
    single = launch(python, tmp_path / "single", **settings)
    finish(single)
    finish(distributed)
    assert_same_weights(tmp_path / "ddp", tmp_path / "single", atol=1e-5)
    initial, trained = make_model(dropout=0.0, head=BertForPreTraining).state_dict(), weights(tmp_path / "ddp")
    for name in ("bert.pooler.dense.weight", "cls.seq_relationship.weight"):
        assert torch.equal(trained[name], initial[name]), name  # no gradient: no step, no weight decay
