"""Where a training run's numbers go: metrics.jsonl, TensorBoard, a PNG of the curves, eval_results.txt.

metrics.jsonl is the record of truth, one JSON object per event:
    {"event": "train", "step": 10, "epoch": 0.5, "loss": 0.69, "learning_rate": 2e-05, ...}
    {"event": "eval", "step": 20, "epoch": 1.0, "eval_loss": 0.61, "eval_accuracy": 0.7, ...}
The plot is redrawn from it, so it shows a resumed run whole.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from bertkit.io_utils import atomic_save_with, atomic_write

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training_curves.png"
# The eval_* keys that are not metrics to plot against the step.
_NOT_CURVES = ("step", "epoch", "global_step")


def write_eval_results(path: str | Path, results: dict) -> None:
    """Google's run_classifier format: one `key = value` line per result, keys sorted."""
    with atomic_write(path) as handle:
        for key in sorted(results):
            handle.write(f"{key} = {results[key]}\n")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                # A run killed mid-write leaves a partial last line; everything before it is good.
                logger.warning("%s:%d: skipping an unreadable line", path, number)
    return records


class MetricsLogger:
    """Writes every event to metrics.jsonl and TensorBoard, and the curves to a PNG.

    `truncate_after`: drop the events after this step that an earlier run left in metrics.jsonl
    and TensorBoard (purge_step): -1 for a fresh run, the checkpoint's step for a resumed one (the
    interrupted run logged past it, and those steps will be logged again), None to append.
    """

    def __init__(self, output_dir: str | Path, tensorboard: bool = True, plot: bool = True,
                 truncate_after: int | None = None):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / METRICS_FILE
        self.plot = plot
        if truncate_after is not None:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= truncate_after]
            with atomic_write(self.path) as handle:
                handle.writelines(json.dumps(r) + "\n" for r in kept)
        self.tb_writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed, so no TensorBoard event files are written; "
                            "pip install 'bertkit[tensorboard]' to get them")
            else:
                purge_step = None if truncate_after is None else truncate_after + 1
                self.tb_writer = SummaryWriter(str(self.output_dir / "tensorboard"), purge_step=purge_step)

    def log(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tb_writer is not None:
            event, step = record["event"], record["step"]
            for key, value in record.items():
                if key not in ("event", "step") and isinstance(value, (int, float)):
                    self.tb_writer.add_scalar(f"{event}/{key.removeprefix('eval_')}", value, step)
            self.tb_writer.flush()

    def plot_curves(self) -> None:
        if self.plot:
            plot_training_curves(read_metrics(self.path), self.output_dir / PLOT_FILE)

    def close(self) -> None:
        self.plot_curves()
        if self.tb_writer is not None:
            self.tb_writer.close()


def _is_metric_curve(key: str) -> bool:
    """Scores only: not counts (`*_support`), and of per-class scores only F1, so that NER's dozen
    per-type precision/recall keys do not bury the headline curves under their legend."""
    if key in _NOT_CURVES or key == "event" or key.endswith(("loss", "_support")):
        return False
    per_class = key.count("_") >= 2  # eval_LOC_precision, against eval_precision
    return not (per_class and key.endswith(("_precision", "_recall")))


def plot_training_curves(records: list[dict], path: str | Path) -> None:
    """Three panels against the step: training (and eval) loss, learning rate, eval metrics."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: this runs on servers and in CI
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") != "train"]
    fig, (ax_loss, ax_lr, ax_eval) = plt.subplots(1, 3, figsize=(15, 4))

    def curve(ax, rows, key, label):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=label)

    curve(ax_loss, train, "loss", "train loss")
    for key in sorted({k for r in evals for k in r if k.endswith("_loss")}):
        curve(ax_loss, evals, key, key)
    curve(ax_lr, train, "learning_rate", "learning rate")
    for key in sorted({k for r in evals for k in r if _is_metric_curve(k)}):
        curve(ax_eval, evals, key, key)
    for ax, title in ((ax_loss, "loss"), (ax_lr, "learning rate"), (ax_eval, "evaluation")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()[0]
        if len(handles) > 6:  # beside the panel, not over the curves
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=math.ceil(len(handles) / 18))
        elif handles:
            ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
