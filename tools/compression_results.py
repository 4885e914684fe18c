"""Produce docs/compression.md: accuracy, size and speed of compressed MiniLM-L6 classifiers on MRPC
and SST-2.

    python tools/compression_results.py                # run what is missing, measure, write the report
    python tools/compression_results.py --task MRPC    # one task's rows only
    python tools/compression_results.py --list         # the commands it would run
    python tools/compression_results.py --speed-only   # re-measure speed and rewrite the report
    python tools/compression_results.py --only student3_ffn50_distilled_int8 --task SST-2
                                                       # that row and the steps it needs, then measure

Each teacher is MiniLM-L6 fine-tuned on the task (lr 1e-4, batch 32, seed 1; MRPC 3 epochs, SST-2
1: the same commands as the seed-1 rows of docs/results.md, whose outputs it reuses when present).
Every compressed model is made by an ordinary `bertkit` command (listed in the report) under
outputs/compression/<task>/<row>/; a finished step (its model.safetensors present) is not run
again. The int8 rows are `bertkit quantize` copies of fp32 rows. Accuracy and speed are then
measured here, side by side, on the task's dev set: every model of a task that exists on this
machine, in the same process, in rounds, so the speed ratios to the teacher compare like with like.

Each invocation that measures is one *run* in docs/compression_runs.json (date, CPU, threads, load
average, and every model it measured, the teacher included). The report shows each row from the
latest run that measured it, with that run's number: a row whose model is not on this machine keeps
its earlier measurement, and its speed-up and share of the teacher's accuracy are to the teacher of
its own run, never to another run's. Runs that no row uses any more are dropped.
Needs ../shared/data and the MiniLM package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_common, which adds src/ and bench/

from report_common import ROOT, bertkit, require_data, run_command, shown  # noqa: E402, I001

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from bertkit.int8 import Int8Linear  # noqa: E402
from bertkit.data.batching import PaddingCollator  # noqa: E402
from bertkit.data.glue import get_processor  # noqa: E402
from bertkit.heads import BertForSequenceClassification  # noqa: E402
from bertkit.paths import minilm_dir  # noqa: E402
from bertkit.tasks.classifier import ClassifierTask, build_dataset  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402
from bertkit.training.metrics import glue_compute_metrics  # noqa: E402

OUTPUTS = ROOT / "outputs" / "compression"
REPORT = ROOT / "docs" / "compression.md"
PLOT = ROOT / "docs" / "compression.png"
MEASURED = ROOT / "docs" / "compression_runs.json"  # the last measurement, committed with the report
# The teachers are the seed-1 rows of docs/results.md (the same commands, so their outputs are reused).
TEACHERS = {"MRPC": ROOT / "outputs" / "glue_results" / "MRPC-minilm-lr0.0001-ep3" / "seed1",
            "SST-2": ROOT / "outputs" / "glue_results" / "SST-2-minilm-lr0.0001-ep1" / "seed1"}
TEACHER_EPOCHS = {"MRPC": 3, "SST-2": 1}
TRAINING = ["--learning_rate=1e-4", "--train_batch_size=32", "--save_checkpoints_steps=100000", "--no_progress"]
# SST-2 has 67,349 training sentences: its students train for a bounded number of steps.
SST2_STEPS, SST2_RECOVERY_STEPS = 1000, 500
SEEDS = (1, 2, 3)  # for the rows whose claim rests on more than one run
# The headline: distilled student + pruning + int8, against the fp32 teacher.
HEADLINE = {"MRPC": "student3_transfer_ffn50_distilled_seed1_int8", "SST-2": "student3_ffn50_distilled_int8"}
INT8_GOAL_POINTS = 1.0  # an int8 row is within this many accuracy points of its fp32 row


@dataclass
class Step:
    """One `bertkit` command that writes a model to outputs/compression/<task>/<name>."""

    task: str
    name: str
    argv: list[str]

    @property
    def output(self) -> Path:
        return TEACHERS[self.task] if self.name == "teacher" else OUTPUTS / self.task / self.name

    @property
    def key(self) -> str:
        return f"{self.task}/{self.name}"


@dataclass
class Row:
    label: str
    task: str
    step: str  # the step whose model the row measures (its command is listed under the table)
    quantizes: str | None = None  # an int8 row: the step of the fp32 row it is a copy of

    @property
    def key(self) -> str:
        return f"{self.task}/{self.step}"


def task_plan(task: str, data: Path) -> tuple[list[Step], list[Row]]:
    glue = ["--task_name=" + task, f"--data_dir={data / 'glue' / task}"]
    teacher = str(TEACHERS[task])
    outputs = OUTPUTS / task

    def out(name):
        return f"--output_dir={outputs / name}"

    def model(name):
        return teacher if name == "teacher" else str(outputs / name)

    def distill(name, *flags, epochs=3, steps=None, cache=True, seed=1):
        # the cache holds logits only: hidden-state losses need the teacher to run
        cached = [f"--teacher_cache_dir={OUTPUTS / 'teacher_cache'}"] if cache else []
        length = [f"--max_steps={steps}"] if steps else [f"--num_train_epochs={epochs}"]
        return Step(task, name, ["distill", f"--teacher={teacher}", *glue, "--do_train=true", "--do_eval=true",
                                 "--temperature=2", *cached, *flags, *TRAINING, f"--seed={seed}", *length, out(name)])

    def prune(name, source, *flags):
        return Step(task, name, ["prune", f"--model={model(source)}", *glue, "--do_eval=true", *flags, out(name)])

    def quantize(source):
        return Step(task, f"{source}_int8", ["quantize", f"--model={model(source)}", out(f"{source}_int8")])

    def int8_row(source, label):
        return Row(f"{label}, int8", task, f"{source}_int8", quantizes=source)

    def finetune(name, *flags):
        return Step(task, name, ["run_classifier", *glue, "--do_train=true", "--do_eval=true",
                                 f"--init_checkpoint={minilm_dir()}", "--max_seq_length=128", *flags, *TRAINING,
                                 "--seed=1", f"--num_train_epochs={TEACHER_EPOCHS[task]}",
                                 f"--output_dir={outputs / name if name != 'teacher' else teacher}"])

    # MRPC's 3,668 pairs show the student few of the teacher's decisions; the teacher also labels
    # these inputs (bertkit distill --transfer_set; data/transfer.py).
    transfer = f"--transfer_set=swap,STS-B={data / 'glue' / 'STS-B'},RTE={data / 'glue' / 'RTE'}"
    epochs = TEACHER_EPOCHS[task]
    teacher_row = Row(f"teacher: MiniLM-L6 fine-tuned ({epochs} epoch{'s' * (epochs != 1)})", task, "teacher")
    if task == "SST-2":
        steps = [
            finetune("teacher"),
            distill("student3_distilled", "--student_layers=every_other", "--alpha=0.5", steps=SST2_STEPS),
            prune("heads50", "teacher", "--heads=0.5"),
            prune("ffn50", "teacher", "--neurons=0.5"),
            prune("student3_ffn50", "student3_distilled", "--neurons=0.5"),
            distill("student3_ffn50_distilled", f"--student={outputs / 'student3_ffn50'}", "--alpha=0.5",
                    steps=SST2_RECOVERY_STEPS),
            quantize("teacher"),
            quantize("student3_ffn50_distilled"),
        ]
        rows = [
            teacher_row,
            Row(f"3 layers (0,2,4) from the teacher, distilled for {SST2_STEPS} steps", task, "student3_distilled"),
            Row("50% of heads pruned (importance), no retraining", task, "heads50"),
            Row("50% of FFN neurons pruned (importance), no retraining", task, "ffn50"),
            Row("the distilled 3-layer student, 50% of its FFN neurons pruned, no retraining", task,
                "student3_ffn50"),
            Row(f"the same, distilled for {SST2_RECOVERY_STEPS} steps", task, "student3_ffn50_distilled"),
            int8_row("teacher", "the teacher"),
            int8_row("student3_ffn50_distilled", "combined: the distilled, pruned student"),
        ]
        return steps, rows
    steps = [
        finetune("teacher"),
        # the rows the goal rests on first
        *[distill(f"student3_transfer_seed{seed}", "--student_layers=every_other", "--alpha=0.5", transfer, seed=seed)
          for seed in SEEDS],
        *[step for seed in SEEDS for step in (
            prune(f"student3_transfer_ffn50_seed{seed}", f"student3_transfer_seed{seed}", "--neurons=0.5"),
            distill(f"student3_transfer_ffn50_distilled_seed{seed}",
                    f"--student={outputs / f'student3_transfer_ffn50_seed{seed}'}", "--alpha=0.5", transfer, epochs=1,
                    seed=seed))],
        quantize("teacher"),
        quantize("student3_transfer_ffn50_distilled_seed1"),
        distill("student3_labels", "--student_layers=every_other", "--alpha=0"),
        distill("student3_distilled", "--student_layers=every_other", "--alpha=0.5"),
        prune("teacher_cut3", "teacher", "--layers=uniform:3", "--depth_report=true"),
        # LayerDrop's authors train with a higher rate the more layers are to be removed: half here
        finetune("layerdrop_p0.5", "--layerdrop=0.5"),
        prune("layerdrop_p0.5_cut3", "layerdrop_p0.5", "--layers=uniform:3", "--depth_report=true"),
        prune("heads50", "teacher", "--heads=0.5"),
        distill("heads50_distilled", f"--student={outputs / 'heads50'}", "--alpha=0.5", epochs=1),
        prune("ffn50", "teacher", "--neurons=0.5"),
        distill("ffn50_distilled", f"--student={outputs / 'ffn50'}", "--alpha=0.5", epochs=1),
        prune("student3_pruned50", "student3_distilled", "--neurons=0.5", "--heads=0.5"),
        distill("student3_pruned50_distilled", f"--student={outputs / 'student3_pruned50'}", "--alpha=0.5",
                epochs=1),
        quantize("student3_pruned50_distilled"),
    ]
    rows = [
        teacher_row,
        Row("3 layers (0,2,4) from the teacher, labels only", task, "student3_labels"),
        Row("3 layers (0,2,4) from the teacher, distilled", task, "student3_distilled"),
        Row("teacher cut to 3 layers (1,3,5), no retraining", task, "teacher_cut3"),
        Row("LayerDrop p=0.5 while fine-tuning, cut to 3 layers (1,3,5)", task, "layerdrop_p0.5_cut3"),
        Row("50% of heads pruned (importance), no retraining", task, "heads50"),
        Row("50% of heads pruned, then distilled for 1 epoch", task, "heads50_distilled"),
        Row("50% of FFN neurons pruned (importance), no retraining", task, "ffn50"),
        Row("50% of FFN neurons pruned, then distilled for 1 epoch", task, "ffn50_distilled"),
        Row("combined: the distilled 3-layer student, 50% of its heads and FFN neurons pruned, distilled for 1 epoch",
            task, "student3_pruned50_distilled"),
        *[Row(f"3 layers (0,2,4), distilled with the transfer set, seed {seed}", task,
              f"student3_transfer_seed{seed}") for seed in SEEDS],
        *[Row(f"combined: that student (seed {seed}), 50% of its FFN neurons pruned, distilled for 1 epoch with "
              "the transfer set", task, f"student3_transfer_ffn50_distilled_seed{seed}") for seed in SEEDS],
        int8_row("teacher", "the teacher"),
        int8_row("student3_pruned50_distilled", "combined: the distilled student, 50% of heads and FFN pruned"),
        int8_row("student3_transfer_ffn50_distilled_seed1", "combined: the student distilled with the transfer set "
                 "(seed 1), 50% of FFN pruned"),
    ]
    return steps, rows


def plan(data: Path) -> tuple[list[Step], list[Row]]:
    steps, rows = [], []
    for task in TEACHERS:
        task_steps, task_rows = task_plan(task, data)
        steps += task_steps
        rows += task_rows
    return steps, rows


def command_line(step: Step) -> str:
    return "bertkit " + " ".join(step.argv)


def sources(step: Step, steps: list[Step]) -> list[Step]:
    """The steps whose models `step` reads (--model, --student, --teacher)."""
    by_output = {str(other.output): other for other in steps}
    return [by_output[arg.split("=", 1)[1]] for arg in step.argv
            if arg.split("=", 1)[0] in ("--model", "--student", "--teacher") and arg.split("=", 1)[1] in by_output]


def needed(names: list[str], steps: list[Step]) -> list[Step]:
    """The steps named (`task/name`) and every step they read from, in plan order."""
    by_key = {step.key: step for step in steps}
    wanted, pending = set(), list(names)
    while pending:
        key = pending.pop()
        if key not in wanted:
            wanted.add(key)
            pending += [source.key for source in sources(by_key[key], steps)]
    return [step for step in steps if step.key in wanted]


def run_steps(steps: list[Step]) -> None:
    for index, step in enumerate(steps):
        if (step.output / "model.safetensors").is_file():
            continue
        print(f"[{index + 1}/{len(steps)}] {step.key}: {command_line(step)}", flush=True)
        seconds, _ = run_command(step.key, bertkit(step.argv))
        (step.output / "step_seconds.txt").write_text(f"{seconds:.1f}\n")


def dev_batches(task: str, model_dir: Path, data: Path) -> list[dict]:
    """The task's dev set as length-sorted batches of 32 (how a serving system would batch them)."""
    tokenizer = FullTokenizer.from_pretrained(model_dir / "vocab.txt")
    classifier_task = ClassifierTask(task, str(data / "glue" / task), 128, do_eval=True, cache_dir=None)
    _, dev = build_dataset(get_processor(task), classifier_task, "dev", tokenizer, str(model_dir / "vocab.txt"),
                           False, progress=False)
    order = sorted(range(len(dev)), key=lambda i: len(dev[i]["input_ids"]))
    return list(DataLoader([dev[i] for i in order], batch_size=32, collate_fn=PaddingCollator()))


@torch.inference_mode()
def predict(model, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for batch in batches:
        labels.append(batch.pop("labels"))
        logits.append(model(**batch).logits)
        batch["labels"] = labels[-1]
    return torch.cat(logits), torch.cat(labels)


def parameters(model) -> int:
    """Parameters, int8 weights (buffers of Int8Linear) included."""
    return model.num_parameters() + sum(module.weight.numel() + module.bias.numel() for module in model.modules()
                                        if isinstance(module, Int8Linear))


def measure(task: str, models: dict[str, Path], batches: list[dict], rounds: int) -> dict[str, dict]:
    """Dev accuracy (and F1 where the task has it), parameters and size on disk of each model, and
    its sentences/s: the median of `rounds` timed passes, taken in turns so that every model sees
    the same machine state."""
    loaded = {name: BertForSequenceClassification.from_pretrained(path).eval() for name, path in models.items()}
    results = {}
    for name, model in loaded.items():
        logits, labels = predict(model, batches)  # also the warm-up pass
        metrics = glue_compute_metrics(task, logits.argmax(-1).numpy(), labels.numpy())
        layers = model.bert.encoder.layer
        results[name] = {"accuracy": metrics["accuracy"], "f1": metrics.get("f1"),
                         "parameters": parameters(model),
                         "disk_bytes": (models[name] / "model.safetensors").stat().st_size,
                         "layers": len(layers),
                         "heads": sum(layer.attention.self.num_heads for layer in layers),
                         "ffn": sum(layer.intermediate.dense.out_features for layer in layers), "seconds": []}
    sentences = sum(len(b["input_ids"]) for b in batches)
    for _ in range(rounds):
        for name, model in loaded.items():
            start = time.perf_counter()
            predict(model, batches)
            results[name]["seconds"].append(time.perf_counter() - start)
    for result in results.values():
        result["sentences_per_second"] = sentences / statistics.median(result.pop("seconds"))
    return results


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@dataclass
class Entry:
    """A model's numbers from the latest run that measured it, with that run's teacher: its speed-up
    and share of the teacher's accuracy are to the teacher measured beside it."""

    run: int
    model: dict
    teacher: dict

    @property
    def speedup(self) -> float:
        return self.model["sentences_per_second"] / self.teacher["sentences_per_second"]

    @property
    def share(self) -> float:
        return self.model["accuracy"] / self.teacher["accuracy"]


def latest(measured: dict, task: str) -> dict[str, Entry]:
    """step -> its entry from the latest run that measured it (runs are in order)."""
    view = {}
    for run in measured["runs"]:
        models = run["tasks"].get(task, {})
        view.update({name: Entry(run["id"], model, models["teacher"]) for name, model in models.items()})
    return view


def meets_goal(name: str, entry: Entry) -> bool:
    """At least 2x the teacher's speed with at least 97% of its accuracy."""
    return name != "teacher" and entry.speedup >= 2 and entry.share >= 0.97


def plot(rows: list[Row], measured: dict) -> None:
    """Accuracy against speed-up per task, with the goal's corner (>= 2x, >= 97% of the teacher) shaded;
    hollow markers are rows kept from an earlier run than the teacher's row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [task for task in TEACHERS if "teacher" in latest(measured, task)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(8 * len(tasks), 6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        view = latest(measured, task)
        teacher = view["teacher"]
        axis.fill_between([2, 100], 100 * 0.97 * teacher.model["accuracy"], 100, color="tab:green", alpha=0.1,
                          label="goal: >= 2x and >= 97% of the teacher")
        task_rows = [row for row in rows if row.task == task]
        for index, row in enumerate(task_rows):
            if row.step not in view:
                continue
            entry = view[row.step]
            x, y = entry.speedup, 100 * entry.model["accuracy"]
            color = f"C{index % 10}"
            axis.scatter(x, y, s=20 + entry.model["parameters"] / 4e5, alpha=0.7, marker="s" if row.quantizes else "o",
                         facecolors=color if entry.run == teacher.run else "none", edgecolors=color)
            axis.annotate(str(index), (x, y), textcoords="offset points", xytext=(5, 4))
        speedups = [entry.speedup for entry in view.values()]
        accuracies = [100 * entry.model["accuracy"] for entry in view.values()]
        axis.set(xlim=(0.8, max(speedups) * 1.1), ylim=(min(accuracies) - 1, max(accuracies) + 1),
                 xlabel=f"inference speed-up over the teacher of the same run ({task} dev)",
                 ylabel=f"{task} dev accuracy",
                 title=f"Compressed MiniLM-L6 on {task} (numbers: rows of the table; area: parameters;\n"
                       "squares: int8; hollow: kept from an earlier run)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    plt.close(fig)


def table(rows: list[Row], view: dict[str, Entry]) -> list[str]:
    index_of = {row.step: index for index, row in enumerate(rows)}
    lines = ["| # | model | layers | heads | FFN units | parameters | disk MB | accuracy | F1 | % of teacher accuracy "
             "| sentences/s | speed-up | run |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for index, row in enumerate(rows):
        label = f"{row.label} (row {index_of[row.quantizes]}, `bertkit quantize`)" if row.quantizes else row.label
        if row.step == HEADLINE.get(row.task):
            label = f"**{label}**"
        entry = view.get(row.step)
        if entry is None:
            lines.append(f"| {index} | {label} | – | – | – | – | – | – | – | – | – | not run yet | – |")
            continue
        m = entry.model
        f1 = f"{100 * m['f1']:.1f}" if m.get("f1") is not None else "–"
        lines.append(f"| {index} | {label} | {m['layers']} | {m['heads']} | {m['ffn']:,} | "
                     f"{m['parameters'] / 1e6:.1f} M | {m['disk_bytes'] / 2**20:.1f} | {100 * m['accuracy']:.1f} | "
                     f"{f1} | {100 * entry.share:.1f}% | {m['sentences_per_second']:.0f} | {entry.speedup:.2f}x | "
                     f"{entry.run} |")
    goal = [str(index) for index, row in enumerate(rows) if row.step in view and meets_goal(row.step, view[row.step])]
    lines += ["", "**Goal** (at least 2x the teacher's speed, at least 97% of its accuracy): "
              + (f"met by row{'s' * (len(goal) > 1)} {', '.join(goal)}" if goal else "not met by any row") + ".", ""]
    lines += int8_summary(rows, view, index_of)
    return lines


def int8_summary(rows: list[Row], view: dict[str, Entry], index_of: dict[str, int]) -> list[str]:
    """Each int8 row against its fp32 row (goal: within INT8_GOAL_POINTS of its accuracy), and the headline."""
    pairs = [(row, view[row.step], view[row.quantizes]) for row in rows
             if row.quantizes and row.step in view and row.quantizes in view]
    if not pairs:
        return []
    parts, missed = [], []
    for row, int8, fp32 in pairs:
        points = 100 * (int8.model["accuracy"] - fp32.model["accuracy"])
        speed = (f"{int8.model['sentences_per_second'] / fp32.model['sentences_per_second']:.2f}x its speed"
                 if int8.run == fp32.run else "speed from different runs, not compared")
        parts.append(f"row {index_of[row.step]} against row {index_of[row.quantizes]}: "
                     f"{100 * int8.model['accuracy']:.1f} against {100 * fp32.model['accuracy']:.1f} accuracy "
                     f"({points:+.1f} points), {speed}")
        if round(points, 1) < -INT8_GOAL_POINTS:  # as the report prints it
            missed.append(str(index_of[row.step]))
    lines = [f"**int8 against fp32** (goal: within {INT8_GOAL_POINTS:g} point of the fp32 row's accuracy; "
             + (f"missed by row{'s' * (len(missed) > 1)} {', '.join(missed)}" if missed else "met") + "): "
             + "; ".join(parts) + ".", ""]
    headline = next((pair for pair in pairs if pair[0].step == HEADLINE.get(pair[0].task)), None)
    if headline is not None:
        row, entry, _ = headline
        lines += [f"**Headline** (distilled student + pruning + int8, row {index_of[row.step]}): "
                  f"{entry.speedup:.1f}x the fp32 teacher's sentences/s at {100 * entry.share:.1f}% of its accuracy "
                  f"({100 * entry.model['accuracy']:.1f} against {100 * entry.teacher['accuracy']:.1f}), "
                  f"{entry.model['disk_bytes'] / entry.teacher['disk_bytes']:.0%} of its size on disk.", ""]
    return lines


def runs_legend(measured: dict, task: str, rows: list[Row], view: dict[str, Entry]) -> list[str]:
    """Which run each row comes from, what the run was, and its teacher (the rows' reference)."""
    lines = ["Runs (the `run` column): speed-ups and shares of the teacher's accuracy are to the teacher measured in "
             "the same run; sentences/s of different runs are not comparable.", ""]
    for run in measured["runs"]:
        shown_rows = [str(index) for index, row in enumerate(rows)
                      if row.step in view and view[row.step].run == run["id"]]
        if not shown_rows or task not in run["tasks"]:
            continue
        teacher = run["tasks"][task]["teacher"]
        load = run.get("loadavg")
        load_text = (f", load average {load[0]:.1f} at the start and {load[1]:.1f} at the end (1 minute; "
                     f"{run.get('cpus', '?')} CPUs)" if load else "")
        lines.append(f"- run {run['id']} ({run['date']}, {run['machine']}, {run['threads']} thread(s), median of "
                     f"{run['rounds']} passes{load_text}): rows {', '.join(shown_rows)}; its teacher "
                     f"{100 * teacher['accuracy']:.1f} accuracy, {teacher['sentences_per_second']:.0f} sentences/s.")
    return lines + [""]


DEPTH_REPORTS = {"teacher_cut3": "the teacher (fine-tuned without LayerDrop)",
                 "layerdrop_p0.5_cut3": "MiniLM fine-tuned with LayerDrop p = 0.5"}


def read_depth_reports() -> dict[str, list[dict]]:
    """The MRPC depth reports of `bertkit prune --depth_report` found under outputs/ (kept in the JSON)."""
    reports = {}
    for name in DEPTH_REPORTS:
        report = OUTPUTS / "MRPC" / name / "prune_report.json"
        if report.is_file():
            reports[name] = json.loads(report.read_text())["depths"]
    return reports


def depth_reports(measured: dict) -> list[str]:
    lines = []
    for name, title in DEPTH_REPORTS.items():
        depths = measured.get("depth_reports", {}).get(name)
        if depths:
            lines += [f"Dev accuracy of {title} cut to every depth (uniform layers, top layer kept), "
                      "from `bertkit prune --depth_report`:", "",
                      "| depth | layers | accuracy | F1 |", "|---:|---|---:|---:|"]
            lines += [f"| {d['depth']} | {','.join(map(str, d['layers']))} | {100 * d['eval_accuracy']:.1f} | "
                      f"{100 * d['eval_f1']:.1f} |" for d in depths]
            lines.append("")
    return lines


def dataset_sizes(data: Path) -> dict[tuple[str, str], int]:
    """(task, split) -> examples, read from the GLUE files, for the report's prose."""
    from bertkit.data.glue import get_processor

    sizes = {}
    for task in ("MRPC", "SST-2", "STS-B", "RTE"):
        processor = get_processor(task)
        sizes[task, "train"] = len(processor.get_train_examples(data / "glue" / task))
        sizes[task, "dev"] = len(processor.get_dev_examples(data / "glue" / task))
    return sizes


def write_report(steps: list[Step], rows: list[Row], measured: dict, data: Path) -> None:
    lines = ["# Compression on MRPC and SST-2", "",
             "Produced by `python tools/compression_results.py`. Each teacher is all-MiniLM-L6-v2 fine-tuned on the "
             "task (lr 1e-4, batch 32, seed 1: MRPC for 3 epochs, SST-2 for 1). Every trained row uses the same "
             "learning rate and batch and one seed unless it says otherwise; docs/results.md shows that MRPC dev "
             "accuracy varies by about ±1.4 points between seeds, so differences of a point are within noise. Speed "
             "is inference on the task's dev set in length-sorted batches of 32, on the CPU and threads of the run "
             "each row comes from (listed under each table): the median of that run's passes, every model of a run "
             "measured in turns in the same process; a row's speed-up and share of the teacher's accuracy are to "
             "the teacher measured in the same run. Models of the same shape run the same code, so the spread of "
             "their speed-ups is the measurement's noise on this shared machine.", "",
             "The int8 rows are `bertkit quantize` copies of fp32 rows: the encoder's Linear layers with int8 "
             "weights (7 bits, one scale per output channel) and activations quantized to 8 bits per call; the "
             "embeddings, pooler and classifier stay fp32, so the file shrinks by less than 4x. The **bold** row "
             "is the combination the compression work aims at: the distilled student, pruned, in int8, against "
             "the fp32 teacher.", "",
             f"![accuracy against speed-up]({PLOT.name})", ""]
    sizes = dataset_sizes(data)
    for task in TEACHERS:
        view = latest(measured, task)
        task_rows = [row for row in rows if row.task == task]
        lines += [f"## {task}", ""]
        if task == "SST-2":
            lines += [f"{sizes['SST-2', 'dev']:,} dev sentences; the students train for a bounded {SST2_STEPS} steps "
                      f"({SST2_STEPS * 32:,} of the {sizes['SST-2', 'train']:,} training sentences), pruned ones "
                      f"recover for {SST2_RECOVERY_STEPS}.", ""]
        if task == "MRPC":
            mrpc, sts, rte = sizes["MRPC", "train"], sizes["STS-B", "train"], sizes["RTE", "train"]
            lines += [f"{sizes['MRPC', 'dev']:,} dev pairs. MRPC's {mrpc:,} training pairs show a student few of the "
                      "teacher's decisions, so the rows marked *the transfer set* also distil on inputs without labels "
                      "(`bertkit distill --transfer_set=swap,STS-B=DIR,RTE=DIR`): the training pairs with their "
                      f"sentences swapped and the training pairs of STS-B ({sts:,}) and RTE ({rte:,}): "
                      f"{mrpc + sts + rte:,} pairs beside the {mrpc:,} labelled ones, on which the student learns "
                      "from the teacher's soft targets alone (the transfer set of Hinton et al. 2015 and Tang et al. "
                      "2019).", ""]
        lines += (table(task_rows, view) + runs_legend(measured, task, task_rows, view) if "teacher" in view
                  else ["Not measured yet.", ""])
        if task == "MRPC":
            lines += depth_reports(measured)
    lines += ["<details><summary>commands, in order ($MINILM is the packaged checkpoint's directory)</summary>", "",
              "```"] + [shown(command_line(step), data) for step in steps] + ["```", "</details>", ""]
    REPORT.write_text("\n".join(lines))


def read_measured() -> dict:
    return json.loads(MEASURED.read_text()) if MEASURED.is_file() else {"runs": []}


def add_run(measured: dict, run: dict) -> dict:
    """`measured` with `run` appended (numbered after the last), less the runs no row comes from any more."""
    runs = measured["runs"] + [{"id": max((r["id"] for r in measured["runs"]), default=0) + 1, **run}]
    measured = {**measured, "runs": runs}
    used = {entry.run for task in TEACHERS for entry in latest(measured, task).values()}
    return {**measured, "runs": [r for r in runs if r["id"] in used]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--task", choices=tuple(TEACHERS), action="append",
                        help="run and measure this task's rows only (the other's measurement is kept)")
    parser.add_argument("--speed-only", action="store_true", help="measure and report; run no training")
    parser.add_argument("--report-only", action="store_true", help=f"rewrite the report from {MEASURED.name}")
    parser.add_argument("--only", action="append", metavar="STEP",
                        help="run only this step (a row's model, e.g. student3_ffn50_distilled_int8) and the steps "
                             "it needs, then measure every model of the task that exists")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the dev set per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while measuring speed")
    args = parser.parse_args()
    data = require_data()
    if data is None:
        return 2
    steps, rows = plan(data)
    tasks = args.task or list(TEACHERS)
    selected = [step for step in steps if step.task in tasks]
    if args.only:
        keys = {step.key for step in selected}
        unknown = [name for name in args.only if not any(f"{task}/{name}" in keys for task in tasks)]
        if unknown:
            parser.error(f"--only {unknown[0]}: no step of {', '.join(tasks)} has that name; the steps are "
                         + ", ".join(sorted({step.name for step in selected})))
        selected = needed([f"{task}/{name}" for name in args.only for task in tasks if f"{task}/{name}" in keys],
                          steps)
    if args.list:
        print("\n".join(command_line(step) for step in selected))
        return 0
    if args.report_only:
        measured = read_measured()
        plot(rows, measured)
        write_report(steps, rows, measured, data)
        return 0
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    if not args.speed_only:
        run_steps(selected)
    torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    fresh = {}
    for task in tasks:
        outputs = {step.name: step.output for step in steps if step.task == task}
        models = {row.step: outputs[row.step] for row in rows
                  if row.task == task and (outputs[row.step] / "model.safetensors").is_file()}
        if "teacher" not in models:
            print(f"the {task} teacher has not been trained yet", file=sys.stderr)
            continue
        batches = dev_batches(task, models["teacher"], data)
        fresh[task] = measure(task, models, batches, args.rounds)
    if not fresh:
        return 1
    # Read only now: another invocation (--task) may have measured the other task meanwhile.
    measured = read_measured()
    measured["depth_reports"] = {**measured.get("depth_reports", {}), **read_depth_reports()}
    measured = add_run(measured, {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_name(),
        "threads": torch.get_num_threads(), "rounds": args.rounds, "cpus": os.cpu_count(),
        "loadavg": [load_at_start, os.getloadavg()[0]], "tasks": fresh})
    MEASURED.write_text(json.dumps(measured, indent=2) + "\n")
    plot(rows, measured)
    write_report(steps, rows, measured, data)
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
