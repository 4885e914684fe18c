"""Where a training run's numbers go: metrics.jsonl, TensorBoard, a PNG of the curves, eval_results.txt.

metrics.jsonl is the record of truth, one JSON object per event:
    {"event": "train", "step": 10, "epoch": 0.5, "loss": 0.69, "learning_rate": 2e-05, ...}
    {"event": "eval", "step": 20, "epoch": 1.0, "eval_loss": 0.61, "eval_accuracy": 0.7, ...}
The plot is redrawn from it, so it shows a resumed run whole.
"""

from __future__ import annotations

import itertools
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


# At most this many lines in a panel: each keeps its own colour and the legend stays short.
MAX_SERIES_PER_PANEL = 8
_PANEL_ORDER = ("loss", "learning rate", "evaluation", "F1 per type", "precision per type", "recall per type")
_EVENT_STYLES = {"train": ("-", None), "eval": ("-", "o"), "test": ("--", "s")}  # line style, marker


def _event_order(event: str) -> tuple:
    return (list(_EVENT_STYLES).index(event) if event in _EVENT_STYLES else len(_EVENT_STYLES), event)


def curve_panels(records: list[dict]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The panels of the plot, each (title, [(event, key), ...]) with at most MAX_SERIES_PER_PANEL
    curves: losses, learning rate, the overall eval metrics, and per-class scores (NER's `<event>_
    <TYPE>_<metric>`, known by their `_support` counts) in a panel per metric, split when there
    are many classes. Counts are not drawn, nor the training speed."""
    present, types = set(), set()
    for record in records:
        event = record.get("event")
        for key, value in record.items():
            if key in _NOT_CURVES or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            present.add((event, key))
            name = key.removeprefix(f"{event}_")
            if event != "train" and name.endswith("_support"):
                types.add(name.removesuffix("_support"))
    panels: dict[str, list[tuple[str, str]]] = {}
    for event, key in present:
        name = key.removeprefix(f"{event}_")
        kind, _, metric = name.rpartition("_")
        if event == "train":
            title = {"loss": "loss", "learning_rate": "learning rate"}.get(key)
        elif name.endswith("loss"):
            title = "loss"
        elif metric == "support":  # also the overall `<event>_support`
            title = None
        elif kind in types:
            title = f"{'F1' if metric == 'f1' else metric} per type"
        else:
            title = "evaluation"
        if title is not None:
            panels.setdefault(title, []).append((event, key))

    def series_order(series: tuple[str, str]) -> tuple:
        event, key = series
        return (key.removeprefix(f"{event}_"), _event_order(event))

    result = []
    for title in sorted(panels, key=lambda t: (_PANEL_ORDER.index(t) if t in _PANEL_ORDER else len(_PANEL_ORDER), t)):
        # A class's eval and test curves stay in one panel, in the same colour.
        chunks: list[list[tuple[str, str]]] = [[]]
        for _, group in itertools.groupby(sorted(panels[title], key=series_order), key=lambda s: series_order(s)[0]):
            group = list(group)
            if chunks[-1] and len(chunks[-1]) + len(group) > MAX_SERIES_PER_PANEL:
                chunks.append([])
            chunks[-1] += group
        result += [(title if len(chunks) == 1 else f"{title} ({n}/{len(chunks)})", chunk)
                   for n, chunk in enumerate(chunks, 1)]
    return result


def plot_training_curves(records: list[dict], path: str | Path) -> None:
    """The curves of curve_panels against the step, three panels a row. In a panel a colour is a
    quantity (a loss, a metric, an entity type) and the line style the split (train, eval, test)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: this runs on servers and in CI
    import matplotlib.pyplot as plt

    panels = curve_panels(records) or [("loss", [])]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    # One step axis for all panels, so that an evaluation lines up with the training it followed.
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.8 * rows), squeeze=False, sharex=True,
                             layout="constrained")
    colours = plt.get_cmap("tab10").colors
    for ax, (title, series) in zip(axes.flat, panels):
        colour_of: dict[tuple, tuple] = {}
        for event, key in series:
            points = [(r["step"], r[key]) for r in records
                      if r.get("event") == event and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if not points:
                continue
            style, marker = _EVENT_STYLES.get(event, (":", "^"))
            # The training loss is not its eval twin: a colour of its own.
            quantity = (event == "train", key.removeprefix(f"{event}_"))
            colour = colour_of.setdefault(quantity, colours[len(colour_of) % len(colours)])
            ax.plot(*zip(*points), style, color=colour, label=key, markersize=3,
                    marker=marker or ("." if len(points) < 50 else None))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.tick_params(labelbottom=True)  # sharex keeps them on the bottom row only
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # beside the panel, not over the curves
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    atomic_save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
