"""Produce docs/compression.md: MRPC accuracy, size and speed of compressed MiniLM-L6 classifiers.

    python tools/compression_results.py                # run what is missing, measure, write the report
    python tools/compression_results.py --list         # the commands it would run
    python tools/compression_results.py --speed-only   # re-measure speed and rewrite the report

The teacher is MiniLM-L6 fine-tuned on MRPC (lr 1e-4, batch 32, 3 epochs, seed 1: the same command
as the seed-1 row of docs/results.md, whose output it reuses when present). Every compressed model
is made by an ordinary `bertkit` command (listed in the report) under outputs/compression/<row>/;
a finished step (its model.safetensors present) is not run again. Accuracy and speed are then
measured here, side by side, on the 408 MRPC dev pairs: every model in the same process, in
rounds, so the speed ratios to the teacher compare like with like. Needs ../shared/data and the
MiniLM package.
"""

from __future__ import annotations

import argparse
import json
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
TEACHER = ROOT / "outputs" / "glue_results" / "MRPC-minilm-lr0.0001-ep3" / "seed1"
TRAINING = ["--learning_rate=1e-4", "--train_batch_size=32", "--save_checkpoints_steps=100000", "--no_progress"]


@dataclass
class Step:
    """One `bertkit` command that writes a model to outputs/compression/<name>."""

    name: str
    argv: list[str]

    @property
    def output(self) -> Path:
        return TEACHER if self.name == "teacher" else OUTPUTS / self.name


@dataclass
class Row:
    label: str
    step: str  # the step whose model the row measures (its command is listed under the table)


def plan(data: Path) -> tuple[list[Step], list[Row]]:
    mrpc = ["--task_name=MRPC", f"--data_dir={data / 'glue' / 'MRPC'}"]
    teacher = str(TEACHER)

    def out(name):
        return f"--output_dir={OUTPUTS / name}"

    def distill(name, *flags, epochs=3, cache=True, seed=1):
        # the cache holds logits only: hidden-state losses need the teacher to run
        cached = [f"--teacher_cache_dir={OUTPUTS / 'teacher_cache'}"] if cache else []
        return Step(name, ["distill", f"--teacher={teacher}", *mrpc, "--do_train=true", "--do_eval=true",
                           "--temperature=2", *cached, *flags, *TRAINING, f"--seed={seed}", f"--num_train_epochs={epochs}",
                           out(name)])

    def prune(name, model, *flags):
        return Step(name, ["prune", f"--model={OUTPUTS / model if model != 'teacher' else teacher}", *mrpc,
                           "--do_eval=true", *flags, out(name)])

    steps = [
        Step("teacher", ["run_classifier", *mrpc, "--do_train=true", "--do_eval=true",
                         f"--init_checkpoint={minilm_dir()}", "--max_seq_length=128", *TRAINING,
                         "--seed=1", "--num_train_epochs=3", f"--output_dir={teacher}"]),
        distill("student3_labels", "--student_layers=every_other", "--alpha=0"),
        distill("student3_distilled", "--student_layers=every_other", "--alpha=0.5"),
        distill("student3_distilled_6ep", "--student_layers=every_other", "--alpha=0.5", epochs=6),
        prune("teacher_cut3", "teacher", "--layers=uniform:3", "--depth_report=true"),
        *[step for p in ("0.2", "0.5") for step in (
            Step(f"layerdrop_p{p}", ["run_classifier", *mrpc, "--do_train=true", "--do_eval=true",
                                     f"--init_checkpoint={minilm_dir()}", f"--layerdrop={p}", *TRAINING,
                                     "--seed=1", "--num_train_epochs=3", out(f"layerdrop_p{p}")]),
            prune(f"layerdrop_p{p}_cut3", f"layerdrop_p{p}", "--layers=uniform:3", "--depth_report=true"))],
        prune("heads50", "teacher", "--heads=0.5"),
        distill("heads50_distilled", f"--student={OUTPUTS / 'heads50'}", "--alpha=0.5", epochs=1),
        prune("ffn50", "teacher", "--neurons=0.5"),
        distill("ffn50_distilled", f"--student={OUTPUTS / 'ffn50'}", "--alpha=0.5", epochs=1),
        prune("student3_pruned50", "student3_distilled", "--neurons=0.5", "--heads=0.5"),
        distill("student3_pruned50_distilled", f"--student={OUTPUTS / 'student3_pruned50'}", "--alpha=0.5",
                epochs=1),
        *[distill(f"student3_pruned50_distilled_3ep_seed{seed}", f"--student={OUTPUTS / 'student3_pruned50'}",
                  "--alpha=0.5", seed=seed) for seed in (1, 2, 3)],
        distill("student3_hidden", "--student_layers=every_other", "--alpha=0.5", "--hidden_weight=1", cache=False),
        distill("student4_distilled", "--student_layers=uniform:4", "--alpha=0.5"),
        prune("student4_ffn50", "student4_distilled", "--neurons=0.5"),
        distill("student4_ffn50_distilled", f"--student={OUTPUTS / 'student4_ffn50'}", "--alpha=0.5", epochs=1),
    ]
    rows = [
        Row("teacher: MiniLM-L6 fine-tuned", "teacher"),
        Row("3 layers (0,2,4) from the teacher, labels only", "student3_labels"),
        Row("3 layers (0,2,4) from the teacher, distilled", "student3_distilled"),
        Row("3 layers (0,2,4) from the teacher, distilled for 6 epochs", "student3_distilled_6ep"),
        Row("teacher cut to 3 layers (1,3,5), no retraining", "teacher_cut3"),
        *[Row(f"LayerDrop p={p} while fine-tuning, cut to 3 layers (1,3,5)", f"layerdrop_p{p}_cut3")
          for p in ("0.2", "0.5")],
        Row("50% of heads pruned (importance), no retraining", "heads50"),
        Row("50% of heads pruned, then distilled for 1 epoch", "heads50_distilled"),
        Row("50% of FFN neurons pruned (importance), no retraining", "ffn50"),
        Row("50% of FFN neurons pruned, then distilled for 1 epoch", "ffn50_distilled"),
        Row("combined: the distilled 3-layer student, 50% of its heads and FFN neurons pruned, distilled for 1 epoch",
            "student3_pruned50_distilled"),
        *[Row(f"the same, distilled for 3 epochs instead of 1, seed {seed}", f"student3_pruned50_distilled_3ep_seed{seed}")
          for seed in (1, 2, 3)],
        Row("3 layers (0,2,4), distilled with hidden-state MSE as well", "student3_hidden"),
        Row("4 layers (1,2,3,5) from the teacher, distilled", "student4_distilled"),
        Row("combined: the distilled 4-layer student, 50% of its FFN neurons pruned, distilled for 1 epoch",
            "student4_ffn50_distilled"),
    ]
    return steps, rows


def command_line(step: Step) -> str:
    return "bertkit " + " ".join(step.argv)


def run_steps(steps: list[Step]) -> None:
    for index, step in enumerate(steps):
        if (step.output / "model.safetensors").is_file():
            continue
        print(f"[{index + 1}/{len(steps)}] {step.name}: {command_line(step)}", flush=True)
        seconds, _ = run_command(step.name, bertkit(step.argv))
        (step.output / "step_seconds.txt").write_text(f"{seconds:.1f}\n")


def dev_batches(model_dir: Path, data: Path) -> list[dict]:
    """MRPC dev as length-sorted batches of 32 (how a serving system would batch them)."""
    tokenizer = FullTokenizer.from_pretrained(model_dir / "vocab.txt")
    task = ClassifierTask("MRPC", str(data / "glue" / "MRPC"), 128, cache_dir=None)
    _, dev = build_dataset(get_processor("MRPC"), task, "dev", tokenizer, str(model_dir / "vocab.txt"), False)
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


def measure(models: dict[str, Path], batches: list[dict], rounds: int) -> dict[str, dict]:
    """Dev accuracy/F1, parameters and size on disk of each model, and its sentences/s: the median of
    `rounds` timed passes, taken in turns so that every model sees the same machine state."""
    loaded = {name: BertForSequenceClassification.from_pretrained(path).eval() for name, path in models.items()}
    results = {}
    for name, model in loaded.items():
        logits, labels = predict(model, batches)  # also the warm-up pass
        metrics = glue_compute_metrics("MRPC", logits.argmax(-1).numpy(), labels.numpy())
        layers = model.bert.encoder.layer
        results[name] = {"accuracy": metrics["accuracy"], "f1": metrics["f1"],
                         "parameters": model.num_parameters(),
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


def plot(rows: list[Row], measured: dict) -> None:
    """Accuracy against speed-up, with the goal's corner (>= 2x, >= 97% of the teacher) shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher = measured["models"]["teacher"]
    fig, axis = plt.subplots(figsize=(9, 6))
    axis.fill_between([2, 100], 100 * 0.97 * teacher["accuracy"], 100, color="tab:green", alpha=0.1,
                      label="goal: >= 2x and >= 97% of the teacher")
    for index, row in enumerate(rows):
        m = measured["models"].get(row.step)
        if m is None:
            continue
        x = m["sentences_per_second"] / teacher["sentences_per_second"]
        axis.scatter(x, 100 * m["accuracy"], s=20 + m["parameters"] / 4e5, alpha=0.7)
        axis.annotate(str(index), (x, 100 * m["accuracy"]), textcoords="offset points", xytext=(5, 4))
    speedups = [m["sentences_per_second"] / teacher["sentences_per_second"] for m in measured["models"].values()]
    accuracies = [100 * m["accuracy"] for m in measured["models"].values()]
    axis.set(xlim=(0.8, max(speedups) * 1.1), ylim=(min(accuracies) - 1, max(accuracies) + 1),
             xlabel="inference speed-up over the teacher (MRPC dev, same run)", ylabel="MRPC dev accuracy",
             title="Compressed MiniLM-L6 on MRPC (numbers: rows of the table; area: parameters)")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)
    plt.close(fig)


def write_report(steps: list[Step], rows: list[Row], measured: dict, data: Path) -> None:
    teacher = measured["models"]["teacher"]
    lines = ["# Compression on MRPC", "",
             "Produced by `python tools/compression_results.py`. The teacher is all-MiniLM-L6-v2 fine-tuned on "
             "MRPC (lr 1e-4, batch 32, 3 epochs, seed 1). Every trained row uses the same hyperparameters (3 epochs; "
             "1 epoch to recover after pruning) and one seed; docs/results.md shows that MRPC dev accuracy varies by about ±1.4 points between seeds, so "
             "differences of a point are within noise. Speed is inference on the 408 dev pairs in length-sorted "
             f"batches of 32, fp32, {measured['threads']} threads on {measured['machine']}: the median of "
             f"{measured['rounds']} passes, every model measured in turns in the same process; the ratio is to "
             "the teacher in that same run. Models of the same shape run the same code, so the spread of their "
             "speed-ups is the measurement's noise on this shared machine.", "",
             f"![accuracy against speed-up]({PLOT.name})", "",
             "| # | model | layers | heads | FFN units | parameters | disk MB | accuracy | F1 | % of teacher accuracy "
             "| sentences/s | speed-up |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for index, row in enumerate(rows):
        m = measured["models"].get(row.step)
        if m is None:
            lines.append(f"| {index} | {row.label} | – | – | – | – | – | – | – | – | – | not run yet |")
            continue
        lines.append(f"| {index} | {row.label} | {m['layers']} | {m['heads']} | {m['ffn']:,} | {m['parameters'] / 1e6:.1f} M | "
                     f"{m['disk_bytes'] / 2**20:.1f} | {100 * m['accuracy']:.1f} | {100 * m['f1']:.1f} | "
                     f"{100 * m['accuracy'] / teacher['accuracy']:.1f}% | {m['sentences_per_second']:.0f} | "
                     f"{m['sentences_per_second'] / teacher['sentences_per_second']:.2f}x |")
    goal = [row for row in rows if row.step in measured["models"] and row.step != "teacher"
            and measured["models"][row.step]["sentences_per_second"] >= 2 * teacher["sentences_per_second"]
            and measured["models"][row.step]["accuracy"] >= 0.97 * teacher["accuracy"]]
    lines += ["", "**Goal** (at least 2x the teacher's speed, at least 97% of its accuracy): "
              + ("met by " + "; ".join(f"*{row.label}*" for row in goal) if goal else "not met by any row") + ".", ""]
    for name, title in (("teacher_cut3", "the teacher (fine-tuned without LayerDrop)"),
                        ("layerdrop_p0.2_cut3", "MiniLM fine-tuned with LayerDrop p = 0.2"),
                        ("layerdrop_p0.5_cut3", "MiniLM fine-tuned with LayerDrop p = 0.5")):
        report = OUTPUTS / name / "prune_report.json"
        if report.is_file():
            depths = json.loads(report.read_text())["depths"]
            lines += [f"Dev accuracy of {title} cut to every depth (uniform layers, top layer kept), "
                      "from `bertkit prune --depth_report`:", "",
                      "| depth | layers | accuracy | F1 |", "|---:|---|---:|---:|"]
            lines += [f"| {d['depth']} | {','.join(map(str, d['layers']))} | {100 * d['eval_accuracy']:.1f} | "
                      f"{100 * d['eval_f1']:.1f} |" for d in depths]
            lines.append("")
    lines += ["<details><summary>commands, in order ($MINILM is the packaged checkpoint's directory)</summary>", "",
              "```"] + [shown(command_line(step), data) for step in steps] + ["```", "</details>", ""]
    REPORT.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--speed-only", action="store_true", help="measure and report; run no training")
    parser.add_argument("--report-only", action="store_true", help=f"rewrite the report from {MEASURED.name}")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the dev set per model")
    args = parser.parse_args()
    data = require_data()
    if data is None:
        return 2
    steps, rows = plan(data)
    if args.list:
        print("\n".join(command_line(step) for step in steps))
        return 0
    if args.report_only:
        measured = json.loads(MEASURED.read_text())
        plot(rows, measured)
        write_report(steps, rows, measured, data)
        return 0
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    if not args.speed_only:
        run_steps(steps)
    by_name = {step.name: step for step in steps}
    models = {row.step: by_name[row.step].output for row in rows
              if (by_name[row.step].output / "model.safetensors").is_file()}
    if "teacher" not in models:
        print("the teacher has not been trained yet", file=sys.stderr)
        return 1
    batches = dev_batches(models["teacher"], data)
    measured = {"threads": torch.get_num_threads(), "machine": cpu_name(),
                "rounds": args.rounds, "models": measure(models, batches, args.rounds)}
    MEASURED.write_text(json.dumps(measured, indent=2) + "\n")
    plot(rows, measured)
    write_report(steps, rows, measured, data)
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
