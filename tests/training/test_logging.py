"""eval_results.txt, metrics.jsonl, TensorBoard event files and the PNG of the curves."""

from __future__ import annotations

import json
import warnings

import pytest

from bertkit.training.logging import MetricsLogger, plot_training_curves, read_metrics, write_eval_results


def test_eval_results_in_googles_format(tmp_path):
    write_eval_results(tmp_path / "eval_results.txt",
                       {"loss": 0.5, "eval_accuracy": 0.875, "global_step": 343, "eval_loss": 0.49})
    assert (tmp_path / "eval_results.txt").read_text() == (
        "eval_accuracy = 0.875\neval_loss = 0.49\nglobal_step = 343\nloss = 0.5\n")


def events(n_train=4):
    records = [{"event": "train", "step": s, "epoch": s / 4, "loss": 1.0 / s, "learning_rate": 1e-5 * s}
               for s in range(1, n_train + 1)]
    records.append({"event": "eval", "step": n_train, "epoch": 1.0, "eval_loss": 0.4, "eval_accuracy": 0.8})
    return records


def test_jsonl_tensorboard_and_plot(tmp_path):
    pytest.importorskip("tensorboard")
    metrics = MetricsLogger(tmp_path, tensorboard=True, plot=True, truncate_after=-1)
    for record in events():
        metrics.log(record)
    metrics.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == events()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_scalars_are_readable(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    metrics = MetricsLogger(tmp_path, plot=False, truncate_after=-1)
    for record in events():
        metrics.log(record)
    metrics.close()
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    assert {"train/loss", "train/learning_rate", "eval/loss", "eval/accuracy"} <= set(accumulator.Tags()["scalars"])
    assert [e.value for e in accumulator.Scalars("eval/accuracy")] == [pytest.approx(0.8)]


def test_resume_drops_events_after_the_checkpoint(tmp_path):
    first = MetricsLogger(tmp_path, tensorboard=False, plot=False, truncate_after=-1)
    for record in events(6):
        first.log(record)
    first.close()
    MetricsLogger(tmp_path, tensorboard=False, plot=False, truncate_after=4).close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    MetricsLogger(tmp_path, tensorboard=False, plot=False, truncate_after=None).close()  # append mode keeps all
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 4
    MetricsLogger(tmp_path, tensorboard=False, plot=False, truncate_after=-1).close()  # a fresh run
    assert read_metrics(tmp_path / "metrics.jsonl") == []


def test_a_torn_last_line_is_skipped(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"event": "train", "step": 1}) + '\n{"event": "tr')
    assert read_metrics(path) == [{"event": "train", "step": 1}]
    assert "metrics.jsonl:2" in caplog.text


def test_plot_without_eval_events(tmp_path):
    plot_training_curves(events()[:-1], tmp_path / "curves.png")
    plot_training_curves([], tmp_path / "empty.png")
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0


def test_plot_of_ner_metrics_keeps_its_layout(tmp_path):
    """NER logs precision, recall, F1 and support per entity type, on dev and test: only the
    scores that fit a legend are drawn (counts and per-type precision/recall are not)."""
    def record(event, step):
        scores = {"precision": 0.1, "recall": 0.2, "f1": 0.15, "accuracy": 0.2, "support": 3.0}
        for name in ("LOC", "MISC", "ORG", "PER"):
            scores.update({f"{name}_{m}": 0.1 for m in ("precision", "recall", "f1")}, **{f"{name}_support": 1.0})
        return {"event": event, "step": step, "epoch": step / 2, f"{event}_loss": 1.9,
                **{f"{event}_{k}": v for k, v in scores.items()}}

    records = [record("eval", 2), {"event": "train", "step": 3, "loss": 1.9, "learning_rate": 1e-5},
               record("eval", 3), record("test", 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when tight_layout cannot fit the figure
        plot_training_curves(records, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
