"""Produce docs/tasks.md: SQuAD, CoNLL-2003 NER and CommonsenseQA with MiniLM-L6, and the
transformers reference run of each.

    python tools/task_results.py                 # run what is missing, then write the report
    python tools/task_results.py --only ner      # one task (ner, squad, csqa)
    python tools/task_results.py --side transformers  # only one side's runs, e.g. the two sides on two cores
    python tools/task_results.py --only csqa --seed 2  # one seed, e.g. two seeds on two cores
    python tools/task_results.py --report-only   # rewrite docs/tasks.md from finished runs
    python tools/task_results.py --list          # the bertkit commands

Each bertkit run is an ordinary command (listed in the report) writing to outputs/tasks/<run>/;
the transformers reference trains transformers' BertForQuestionAnswering / BertForTokenClassification /
BertForMultipleChoice with its Trainer on the same features and hyperparameters (bench/hf_reference.py). Finished runs
are recorded in docs/task_runs.jsonl (committed) and not run again. Needs ../shared/data and the
MiniLM package; the references need `pip install transformers accelerate`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_common, which adds src/ and bench/

from report_common import ROOT, bertkit, mean_std, read_eval_results, require_data, run_command, shown  # noqa: E402, I001

from bertkit.paths import minilm_dir  # noqa: E402

OUTPUTS = ROOT / "outputs" / "tasks"
REPORT = ROOT / "docs" / "tasks.md"
RECORDS = ROOT / "docs" / "task_runs.jsonl"
# CommonsenseQA's and NER's parity is judged on a mean: one CommonsenseQA run's accuracy on 1,221
# questions has a standard error of about 1.4 points, more than the 1 point allowed. SQuAD at 384
# tokens costs hours a seed here.
SEEDS = {"ner": (1, 2, 3), "squad": (1,), "csqa": (1, 2, 3)}
REFERENCE_TASKS = ("squad", "ner", "csqa")  # the tasks with a transformers run
# Hyperparameters shared by bertkit and the transformers reference of each task.
SQUAD = dict(split_articles=38, learning_rate=1e-4, num_train_epochs=1.0, batch_size=32, max_seq_length=384,
             doc_stride=128, max_query_length=64)
CSQA = dict(learning_rate=5e-5, num_train_epochs=3.0, batch_size=16, max_seq_length=64)
NER = dict(learning_rate=5e-5, num_train_epochs=3.0, batch_size=32, max_seq_length=128)


@dataclass
class TaskRun:
    task: str  # a key of SEEDS
    seed: int
    argv: list[str]

    @property
    def output(self) -> Path:
        return output_dir(self.task, self.seed)


def output_dir(task: str, seed: int) -> Path:
    return OUTPUTS / (task if seed == 1 else f"{task}_seed{seed}")


def planned(data: Path) -> list[TaskRun]:
    return [run for task in SEEDS for seed in SEEDS[task] for run in planned_for_seed(data, seed) if run.task == task]


def planned_for_seed(data: Path, seed: int) -> list[TaskRun]:
    common = [f"--init_checkpoint={minilm_dir()}", f"--seed={seed}", "--save_checkpoints_steps=100000",
              "--no_progress"]
    return [
        TaskRun("ner", seed, ["run_ner", f"--data_dir={data / 'conll2003'}", "--do_train=true", "--do_eval=true",
                        "--do_predict=true", f"--learning_rate={NER['learning_rate']:g}",
                        f"--num_train_epochs={NER['num_train_epochs']:g}", f"--train_batch_size={NER['batch_size']}",
                        f"--max_seq_length={NER['max_seq_length']}", *common, f"--output_dir={output_dir('ner', seed)}"]),
        TaskRun("squad", seed, ["run_squad", f"--train_file={data / 'squad' / 'dev-v1.1.json'}",
                          f"--split_articles={SQUAD['split_articles']}", "--do_train=true", "--do_predict=true",
                          f"--max_seq_length={SQUAD['max_seq_length']}", f"--doc_stride={SQUAD['doc_stride']}",
                          f"--max_query_length={SQUAD['max_query_length']}",
                          f"--learning_rate={SQUAD['learning_rate']:g}",
                          f"--num_train_epochs={SQUAD['num_train_epochs']:g}",
                          f"--train_batch_size={SQUAD['batch_size']}", "--predict_batch_size=64", *common,
                          f"--output_dir={output_dir('squad', seed)}"]),
        TaskRun("csqa", seed, ["run_multiple_choice", "--task=commonsenseqa",
                         f"--data_dir={data / 'multiple_choice' / 'commonsenseqa'}", "--do_train=true",
                         "--do_eval=true", f"--max_seq_length={CSQA['max_seq_length']}",
                         f"--train_batch_size={CSQA['batch_size']}", f"--learning_rate={CSQA['learning_rate']:g}",
                         f"--num_train_epochs={CSQA['num_train_epochs']:g}", *common,
                         f"--output_dir={output_dir('csqa', seed)}"]),
    ]


def read_records() -> dict[tuple[str, int], dict]:
    """Finished runs by (key, seed)."""
    if not RECORDS.is_file():
        return {}
    return {(r["key"], r["seed"]): r for r in map(json.loads, RECORDS.read_text().splitlines())}


def record(key: str, seed: int, metrics: dict, seconds: float, command: str) -> None:
    with open(RECORDS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": key, "seed": seed, "metrics": metrics, "wall_seconds": round(seconds, 1),
                                 "command": command}) + "\n")


def run_bertkit(run: TaskRun, data: Path) -> None:
    seconds, _ = run_command(run.task, bertkit(run.argv))
    if run.task == "ner":
        metrics = {split: json.loads((run.output / f"{prefix}_results.json").read_text())
                   for split, prefix in (("testa", "eval"), ("testb", "test"))}
    else:  # squad: exact_match, f1; csqa: eval_accuracy
        metrics = read_eval_results(run.output / "eval_results.txt")
    record(f"bertkit-{run.task}", run.seed, metrics, seconds, shown("bertkit " + " ".join(run.argv), data))


def run_reference(task: str, seed: int, data: Path) -> None:
    from hf_reference import run_hf_multiple_choice, run_hf_ner, run_hf_squad

    start = time.perf_counter()
    if task == "squad":
        metrics = run_hf_squad(data / "squad" / "dev-v1.1.json", minilm_dir(), seed=seed, **SQUAD)
        call = f"run_hf_squad('../shared/data/squad/dev-v1.1.json', '$MINILM', seed={seed}, **{SQUAD})"
    elif task == "ner":
        metrics = run_hf_ner(data / "conll2003", minilm_dir(), seed=seed, **NER)
        call = f"run_hf_ner('../shared/data/conll2003', '$MINILM', seed={seed}, **{NER})"
    else:
        metrics = run_hf_multiple_choice("commonsenseqa", data / "multiple_choice" / "commonsenseqa", minilm_dir(),
                                         seed=seed, **CSQA)
        call = (f"run_hf_multiple_choice('commonsenseqa', '../shared/data/multiple_choice/commonsenseqa', '$MINILM', "
                f"seed={seed}, **{CSQA})")
    record(f"transformers-{task}", seed, metrics, time.perf_counter() - start, f"bench/hf_reference.py: {call}")


def binomial_standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def ner_section(records: dict) -> list[str]:
    """Entity F1 of both sides on eng.testa and eng.testb, per seed and mean ± std, the gap, and
    bertkit's seed-1 scores per entity type."""
    seeds = SEEDS["ner"]
    lines = ["", "## CoNLL-2003 NER (`bertkit run_ner`)", "",
             f"IOB1 read, IOB2 scored with seqeval (entity level). lr {NER['learning_rate']:g}, batch "
             f"{NER['batch_size']}, {NER['num_train_epochs']:g} epochs, max_seq_length {NER['max_seq_length']}, trained "
             "on eng.train; the reference is transformers' BertForTokenClassification and Trainer on the same "
             "windows, its predictions aligned to words and scored as run_ner's. Entity F1 ×100:", "",
             "| model | eng.testa F1 | eng.testb F1 | " + " | ".join(f"seed {seed} (a / b)" for seed in seeds) + " |",
             "|---|---:|---:|" + "---:|" * len(seeds)]
    f1 = {}
    for name, key in (("bertkit", "bertkit-ner"), ("transformers BertForTokenClassification (reference)",
                                                   "transformers-ner")):
        f1[key] = {split: {seed: records[(key, seed)]["metrics"][split]["f1"] for seed in seeds
                           if (key, seed) in records} for split in ("testa", "testb")}
        cells = [f"{100 * f1[key]['testa'][seed]:.1f} / {100 * f1[key]['testb'][seed]:.1f}"
                 if seed in f1[key]["testa"] else "–" for seed in seeds]
        lines.append(f"| {name} | {mean_std(list(f1[key]['testa'].values()))} | "
                     f"{mean_std(list(f1[key]['testb'].values()))} | " + " | ".join(cells) + " |")
    both = sorted(set(f1["bertkit-ner"]["testa"]) & set(f1["transformers-ner"]["testa"]))
    if both:
        gaps = {split: 100 * statistics.mean(f1["bertkit-ner"][split][s] - f1["transformers-ner"][split][s]
                                             for s in both) for split in ("testa", "testb")}
        worst = max(abs(gap) for gap in gaps.values())
        lines += ["", f"Mean F1 difference from the reference, seed by seed (seed{'s' * (len(both) > 1)} "
                  f"{', '.join(map(str, both))}): {gaps['testa']:+.1f} on eng.testa, {gaps['testb']:+.1f} on "
                  f"eng.testb; the goal is at most 1 point: " + ("met." if worst <= 1 else "missed.")]
    ner = records.get(("bertkit-ner", 1))
    if ner:
        types = sorted(ner["metrics"]["testa"]["per_type"])
        lines += ["", "bertkit, seed 1, per entity type (precision / recall / F1):", "",
                  "| entity type | " + " | ".join(f"{split} P / R / F1" for split in ("eng.testa", "eng.testb")) + " |",
                  "|---|---:|---:|"]
        for entity in [*types, None]:
            cells = []
            for split in ("testa", "testb"):
                m = ner["metrics"][split]
                m = m["per_type"][entity] if entity else m
                cells.append(f"{100 * m['precision']:.1f} / {100 * m['recall']:.1f} / {100 * m['f1']:.1f}")
            lines.append(f"| {entity or '**all (micro)**'} | " + " | ".join(cells) + " |")
    return lines


def write_report(runs: list[TaskRun], data: Path) -> None:
    records = read_records()
    lines = ["# SQuAD, NER and multiple choice", "",
             "Produced by `python tools/task_results.py`. all-MiniLM-L6-v2 fine-tuned with bertkit on a 2-core CPU, "
             "seed 1 (NER and CommonsenseQA: seeds 1-3); the transformers rows train transformers' own model class with its Trainer on the same "
             "features and hyperparameters (`bench/hf_reference.py`).", ""]
    squad, squad_hf = records.get(("bertkit-squad", 1)), records.get(("transformers-squad", 1))
    lines += ["## SQuAD v1.1 (`bertkit run_squad`)", "",
              f"Only dev-v1.1.json is here: training on its first {SQUAD['split_articles']} articles, evaluation on "
              f"the other 10 (official EM and F1). max_seq_length {SQUAD['max_seq_length']}, doc_stride "
              f"{SQUAD['doc_stride']}, batch {SQUAD['batch_size']}, lr {SQUAD['learning_rate']:g}, "
              f"{SQUAD['num_train_epochs']:g} epochs.", "", "| model | exact match | F1 |", "|---|---:|---:|"]
    for name, rec in (("bertkit", squad), ("transformers BertForQuestionAnswering (reference)", squad_hf)):
        m = rec["metrics"] if rec else None
        lines.append(f"| {name} | {m['exact_match']:.1f} | {m['f1']:.1f} |" if m else f"| {name} | – | – |")
    if squad and squad_hf:
        gap = squad["metrics"]["f1"] - squad_hf["metrics"]["f1"]
        lines += ["", f"F1 difference: {gap:+.1f} (the issue asks for at most 1)."]
    lines += ner_section(records)
    seeds = SEEDS["csqa"]
    sides = (("bertkit", "bertkit-csqa", "eval_accuracy"),
             ("transformers BertForMultipleChoice (reference)", "transformers-csqa", "accuracy"))
    accuracy = {key: {seed: records[(key, seed)]["metrics"][metric] for seed in seeds if (key, seed) in records}
                for _, key, metric in sides}
    lines += ["", "## CommonsenseQA (`bertkit run_multiple_choice`)", "",
              f"9,741 train / 1,221 dev questions, 5 choices (chance 20%). max_seq_length {CSQA['max_seq_length']}, "
              f"batch {CSQA['batch_size']}, lr {CSQA['learning_rate']:g}, {CSQA['num_train_epochs']:g} epochs; "
              "mean ± std over the seeds run.", "",
              "| model | dev accuracy | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
              "|---|---:|" + "---:|" * len(seeds)]
    for name, key, _ in sides:
        by_seed = accuracy[key]
        cells = [f"{100 * by_seed[seed]:.1f}" if seed in by_seed else "–" for seed in seeds]
        lines.append(f"| {name} | {mean_std(list(by_seed.values()))} | " + " | ".join(cells) + " |")
    reference = accuracy["transformers-csqa"]
    both = sorted(set(accuracy["bertkit-csqa"]) & set(reference))
    if both:
        gap = 100 * statistics.mean(accuracy["bertkit-csqa"][s] - reference[s] for s in both)
        lines += ["", f"Mean accuracy difference from the reference, seed by seed "
                  f"(seed{'s' * (len(both) > 1)} {', '.join(map(str, both))}): {gap:+.1f} points. The issue asks "
                  "for at most 1; one run's accuracy on 1,221 questions has a standard error of about "
                  f"{100 * binomial_standard_error(statistics.mean(reference.values()), 1221):.1f} points."]
    lines += ["", "<details><summary>commands ($MINILM is the packaged checkpoint's directory)</summary>", "", "```"]
    lines += [shown("bertkit " + " ".join(run.argv), data) for run in runs]
    lines += [r["command"] for (key, _), r in sorted(records.items()) if key.startswith("transformers-")]
    lines += ["```", "</details>", ""]
    REPORT.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=tuple(SEEDS), action="append")
    parser.add_argument("--side", choices=("bertkit", "transformers"),
                        help="run only this side's missing runs (default: both)")
    parser.add_argument("--seed", type=int, action="append", help="run only this seed's missing runs")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    data = require_data()
    if data is None:
        return 2
    runs = planned(data)
    of_tasks = [run for run in runs if not args.only or run.task in args.only]
    unplanned = sorted(set(args.seed or ()) - {run.seed for run in of_tasks})
    if unplanned:
        parser.error(f"--seed {', '.join(map(str, unplanned))}: no run has that seed; the seeds per task are "
                     + ", ".join(f"{task} {'/'.join(map(str, seeds))}" for task, seeds in SEEDS.items()))
    selected = [run for run in of_tasks if not args.seed or run.seed in args.seed]
    if args.list:
        print("\n".join("bertkit " + " ".join(run.argv) for run in selected))
        return 0
    if not args.report_only:
        for run in selected:
            records = read_records()  # afresh: another invocation (--seed, --side) may have finished this run
            if args.side != "transformers" and (f"bertkit-{run.task}", run.seed) not in records:
                run_bertkit(run, data)
                write_report(runs, data)
            if (args.side != "bertkit" and run.task in REFERENCE_TASKS
                    and (f"transformers-{run.task}", run.seed) not in records):
                run_reference(run.task, run.seed, data)
                write_report(runs, data)
    write_report(runs, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
