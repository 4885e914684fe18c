"""eval_results.txt, metrics.jsonl, TensorBoard event files and the PNG of the curves."""

from __future__ import annotations

import json
import warnings

import pytest

from bertkit.training.logging import (MAX_SERIES_PER_PANEL, MetricsLogger, curve_panels, plot_training_curves,
                                     read_metrics, write_eval_results)


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


def ner_record(event, step, types=("LOC", "MISC", "ORG", "PER")):
    """What run_ner logs: precision, recall, F1 and support overall and per entity type."""
    scores = {"precision": 0.1, "recall": 0.2, "f1": 0.15, "accuracy": 0.2, "support": 3.0}
    for name in types:
        scores.update({f"{name}_{m}": 0.1 for m in ("precision", "recall", "f1")}, **{f"{name}_support": 1.0})
    return {"event": event, "step": step, "epoch": step / 2, f"{event}_loss": 1.9,
            **{f"{event}_{k}": v for k, v in scores.items()}}


def ner_records(types=("LOC", "MISC", "ORG", "PER")):
    train = [{"event": "train", "step": s, "epoch": s / 4, "loss": 1.0 / s, "learning_rate": 1e-5, "grad_norm": 1.0}
             for s in range(1, 5)]
    return [*train[:2], ner_record("eval", 2, types), *train[2:], ner_record("eval", 4, types),
            ner_record("test", 4, types)]


def test_ner_curves_are_grouped_so_every_line_can_be_told_apart():
    """Before, one panel held all 16 NER score curves, in repeating colours."""
    panels = curve_panels(ner_records())
    assert [title for title, _ in panels] == ["loss", "learning rate", "evaluation", "F1 per type",
                                              "precision per type", "recall per type"]
    assert all(len(series) <= MAX_SERIES_PER_PANEL for _, series in panels)
    drawn = [key for _, series in panels for _, key in series]
    assert len(drawn) == len(set(drawn))
    scores = {k for r in ner_records() for k in r if k not in ("event", "step", "epoch", "grad_norm")
              and not k.endswith("_support")}
    assert set(drawn) == scores  # every score, once; counts and the gradient norm are not drawn
    assert dict(panels)["F1 per type"] == [(e, f"{e}_{t}_f1") for t in ("LOC", "MISC", "ORG", "PER")
                                           for e in ("eval", "test")]
    assert dict(panels)["loss"] == [("train", "loss"), ("eval", "eval_loss"), ("test", "test_loss")]


def test_many_entity_types_split_a_panel_without_splitting_a_type():
    types = [f"TYPE{n:02d}" for n in range(18)]  # OntoNotes has 18
    panels = [(title, series) for title, series in curve_panels(ner_records(types)) if title.startswith("F1")]
    assert [title for title, _ in panels] == [f"F1 per type ({n}/5)" for n in range(1, 6)]
    assert all(len(series) <= MAX_SERIES_PER_PANEL for _, series in panels)
    for _, series in panels:  # a type's eval and test curves share a panel (and a colour)
        assert {key.split("_")[1] for event, key in series if event == "eval"} == \
               {key.split("_")[1] for event, key in series if event == "test"}
    assert sum(len(series) for _, series in panels) == 36


def test_classification_metrics_are_not_mistaken_for_classes():
    records = [*events(), {"event": "eval", "step": 4, "eval_loss": 0.4, "eval_accuracy": 0.8, "eval_f1": 0.7,
                           "eval_acc_and_f1": 0.75}]
    assert [(title, len(series)) for title, series in curve_panels(records)] == [
        ("loss", 2), ("learning rate", 1), ("evaluation", 3)]


@pytest.mark.parametrize("types", [("LOC", "MISC", "ORG", "PER"), [f"T{n}" for n in range(18)]], ids=["4", "18"])
def test_plot_of_ner_metrics(tmp_path, types):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when the layout cannot fit the figure
        plot_training_curves(ner_records(types), tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
