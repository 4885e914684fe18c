"""Produce docs/results.md: GLUE dev results of bertkit run_classifier, mean ± std over seeds.

    python tools/glue_results.py                 # every run below, then the report
    python tools/glue_results.py --report-only   # rebuild docs/results.md from finished runs
    python tools/glue_results.py --list          # the commands it would run

Start it twice (OMP_NUM_THREADS=1 each on a 2-core machine) and the two share the list: a job
is claimed under outputs/glue_results/claims/ before it runs.

Each run is an ordinary `bertkit run_classifier` command line (printed in the report), writing
to outputs/glue_results/<run>/seed<k>/. Finished runs (eval_results.txt present) are not run
again, so an interrupted invocation resumes where it stopped; the report is rewritten after
every run. Needs ../shared/data (GLUE, uncased vocab) and the MiniLM package; the transformers
parity rows also need `pip install transformers accelerate`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_common, which adds src/ and bench/

from report_common import ROOT, bertkit, mean_std, read_eval_results, require_data, run_command, shown  # noqa: E402, I001

from bertkit.io_utils import atomic_write  # noqa: E402
from bertkit.paths import minilm_dir  # noqa: E402

OUTPUTS = ROOT / "outputs" / "glue_results"
REPORT = ROOT / "docs" / "results.md"
# One JSON line per finished run, committed, so that results outlive the outputs/ folder and a
# later invocation (or session) only runs what is missing.
RECORDS = ROOT / "docs" / "glue_runs.jsonl"
SEEDS = (1, 2, 3)
# The parity check compares two means whose seed-to-seed spread (about ±1.4 points) is larger than
# the 1 point it allows, so its rows (ours and transformers') get two more seeds.
PARITY_SEEDS = (1, 2, 3, 4, 5)
BERT_TINY = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "hidden_size": 128, "initializer_range": 0.02, "intermediate_size": 512,
             "max_position_embeddings": 512, "num_attention_heads": 2, "num_hidden_layers": 2,
             "type_vocab_size": 2, "vocab_size": 30522}
# Dev-set majority class, to flag runs that collapsed onto it.
MAJORITY = {"MRPC": {"eval_accuracy": 0.684, "eval_f1": 0.812}, "RTE": {"eval_accuracy": 0.527},
            "SST-2": {"eval_accuracy": 0.509}, "CoLA": {"eval_mcc": 0.0}}
HEADLINE = {"MRPC": ("eval_accuracy", "eval_f1"), "RTE": ("eval_accuracy",), "SST-2": ("eval_accuracy",),
            "CoLA": ("eval_mcc",), "STS-B": ("eval_pearson", "eval_spearmanr")}


@dataclass
class Run:
    task: str
    name: str  # what the row says
    model: str  # "minilm", "minilm-scratch" or "tiny-scratch"
    learning_rate: float
    epochs: float = 3.0
    extra: tuple[str, ...] = ()
    seeds: tuple[int, ...] = SEEDS

    @property
    def key(self) -> str:
        tail = "_".join(e.strip("-").replace("=", "") for e in self.extra)
        return f"{self.task}-{self.model}-lr{self.learning_rate:g}-ep{self.epochs:g}" + (f"-{tail}" if tail else "")

    def argv(self, seed: int, data: Path) -> list[str]:
        minilm = minilm_dir()
        model_flags = {
            "minilm": [f"--init_checkpoint={minilm}"],
            "minilm-scratch": [f"--bert_config_file={minilm / 'config.json'}", f"--vocab_file={minilm / 'vocab.txt'}"],
            "tiny-scratch": [f"--bert_config_file={OUTPUTS / 'bert_tiny_config.json'}",
                             f"--vocab_file={data / 'vocab' / 'bert-base-uncased' / 'vocab.txt'}"],
        }[self.model]
        return ["run_classifier", f"--task_name={self.task}", "--do_train=true", "--do_eval=true",
                f"--data_dir={data / 'glue' / self.task}", *model_flags, "--max_seq_length=128",
                "--train_batch_size=32", f"--learning_rate={self.learning_rate:g}",
                f"--num_train_epochs={self.epochs:g}", f"--seed={seed}", "--save_checkpoints_steps=100000",
                *self.extra, f"--output_dir={OUTPUTS / self.key / f'seed{seed}'}"]


def planned_runs() -> list[Run]:
    """In order of importance: what a deadline cuts short is the least important.

    MRPC gets the full study, (a) to (d) at the seed's and a tuned learning rate. The other tasks
    get the pretrained model at both rates: from-scratch baselines there would cost 9 runs of up to
    10 minutes each (on this CPU) to show what MRPC rows (b) and (c) show already.
    """
    minilm = [Run("MRPC", "(a) MiniLM-L6, pretrained", "minilm", 2e-5, seeds=PARITY_SEEDS),
              Run("MRPC", "(a) MiniLM-L6, pretrained", "minilm", 1e-4)]
    # transformers' Trainer samples random batches: the like-for-like row for the parity check.
    minilm.append(Run("MRPC", "(a) MiniLM-L6, pretrained, random batches (--group_by_length=false)", "minilm", 2e-5,
                      extra=("--group_by_length=false",), seeds=PARITY_SEEDS))
    tiny = [Run("MRPC", "(c) BERT-Tiny config, from scratch", "tiny-scratch", lr) for lr in (2e-5, 1e-4)]
    scratch = [Run("MRPC", "(b) MiniLM-L6 architecture, from scratch", "minilm-scratch", lr) for lr in (1e-4, 2e-5)]
    reinit = [Run("MRPC", f"(d) MiniLM-L6, --reinit_top_layers={n}", "minilm", lr, extra=(f"--reinit_top_layers={n}",))
              for lr in (1e-4, 2e-5) for n in (1, 2)]
    others = [Run(task, "MiniLM-L6, pretrained", "minilm", 1e-4) for task in ("RTE", "STS-B", "CoLA")]
    others.append(Run("SST-2", "MiniLM-L6, pretrained", "minilm", 1e-4, epochs=1.0))
    # SST-2's epoch is the longest run: it goes first, so that the short ones even out the streams at the end.
    others.append(Run("SST-2", "MiniLM-L6, pretrained", "minilm", 2e-5, epochs=1.0))
    others += [Run(task, "MiniLM-L6, pretrained", "minilm", 2e-5) for task in ("RTE", "STS-B", "CoLA")]
    return minilm + tiny + scratch[:1] + reinit[:2] + others[:4] + scratch[1:] + reinit[2:] + others[4:]


def read_records() -> dict[tuple[str, int], dict]:
    """{(run key, seed): record} of every finished run."""
    if not RECORDS.is_file():
        return {}
    records = (json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip())
    return {(r["key"], r["seed"]): r for r in records}


def read_results(path: Path) -> dict | None:
    """The final eval_results.txt of a finished run (the Trainer rewrites it after every epoch)."""
    if not path.is_file() or not (path.parent / "model.safetensors").is_file():
        return None
    return read_eval_results(path)


def record(key: str, seed: int, metrics: dict, seconds: float | None, command: str) -> None:
    with open(RECORDS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": key, "seed": seed, "metrics": metrics, "wall_seconds": seconds,
                                 "command": command}) + "\n")


def _try_claim(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def _stale(path: Path) -> bool:
    """Whether the claim was left by a process that has died."""
    try:
        os.kill(int(path.read_text()), 0)
    except ProcessLookupError:
        return True
    except (ValueError, FileNotFoundError):  # being written, or just released
        return False
    return False


@contextmanager
def claim(key: str, seed: int):
    """Yields whether this process may run the job: it is not recorded yet and no live process has
    claimed it. Several invocations can then share the list (one thread each on a 2-core machine)."""
    path = OUTPUTS / "claims" / f"{key}-seed{seed}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if (key, seed) in read_records():
        yield False
        return
    if not _try_claim(path):
        if not _stale(path):
            yield False
            return
        path.unlink(missing_ok=True)
        if not _try_claim(path):
            yield False
            return
    try:
        yield (key, seed) not in read_records()  # another process may have finished it meanwhile
    finally:
        path.unlink(missing_ok=True)


def run_one(run: Run, seed: int, data: Path) -> None:
    if (run.key, seed) in read_records():
        return
    out = OUTPUTS / run.key / f"seed{seed}"
    metrics = read_results(out / "eval_results.txt")  # finished before records existed
    seconds = None
    if metrics is None:
        seconds, _ = run_command(f"{run.key} seed {seed}", bertkit([*run.argv(seed, data), "--no_progress"]))
        seconds = round(seconds, 1)
        metrics = read_results(out / "eval_results.txt")
    record(run.key, seed, metrics, seconds, "bertkit " + " ".join(run.argv(seed, data)))


@dataclass(frozen=True)
class Reference:
    """transformers' Trainer on MRPC with the seed's hyperparameters (2e-5, batch 32, 3 epochs)."""
    key: str
    name: str
    padding: str  # run_hf_glue's
    schedule: str  # run_hf_glue's


# The first is the parity reference: bertkit's recipe (Google's schedule) and transformers' default
# batching (random batches, dynamic padding). The others change one thing each, on fewer seeds.
REFERENCES = (
    Reference("transformers-google-schedule-MRPC-minilm-lr2e-05-ep3",
              "random batches, Google's linear schedule (the same hyperparameters)", "dynamic", "google"),
    Reference("transformers-dynamic-MRPC-minilm-lr2e-05-ep3",
              "random batches, transformers' own linear schedule (its default)", "dynamic", "transformers"),
    Reference("transformers-MRPC-minilm-lr2e-05-ep3",
              "train_sampling_strategy=group_by_length, transformers' schedule", "group_by_length", "transformers"),
)
PARITY = REFERENCES[0]


def hf_reference(reference: Reference, data: Path, seed: int) -> None:
    if (reference.key, seed) in read_records():
        return
    from hf_reference import run_hf_glue

    options = f"seed={seed}, learning_rate=2e-5, num_train_epochs=3.0, padding='{reference.padding}', " \
              f"schedule='{reference.schedule}'"
    result = run_hf_glue("MRPC", data / "glue" / "MRPC", minilm_dir(), seed=seed, learning_rate=2e-5,
                         num_train_epochs=3.0, padding=reference.padding, schedule=reference.schedule)
    record(reference.key, seed, result, result.get("train_seconds"),
           f"python -c \"from hf_reference import run_hf_glue; run_hf_glue('MRPC', '../shared/data/glue/MRPC', "
           f"'$MINILM', {options})\" (in bench/)")


def collapsed(task: str, results: list[dict]) -> bool:
    majority = MAJORITY.get(task)
    if not majority or not results:
        return False
    return all(all(abs(r.get(k, -1) - v) < 0.005 for k, v in majority.items()) for r in results)


def write_report(runs: list[Run], data: Path) -> None:
    lines = ["# GLUE dev results", "",
             "Produced by `python tools/glue_results.py` (the exact command of each row is listed under its "
             "table). Every run is `bertkit run_classifier` with max_seq_length 128, batch 32, warmup 10%, "
             "weight decay 0.01, dynamic padding with length-grouped batches, fp32, on a 2-core CPU. "
             "Numbers are dev-set scores ×100, mean ± std over seeds " + ", ".join(map(str, SEEDS)) + " "
             "(seeds " + ", ".join(map(str, PARITY_SEEDS)) + " for the rows of the parity check; n = seeds "
             "finished). **collapsed** marks runs that predict the majority class on every seed.", "",
             "The other results have their own pages, each produced by its own script: SQuAD, CoNLL-2003 NER and "
             "CommonsenseQA in [tasks.md](tasks.md) (`tools/task_results.py`), pre-training in "
             "[pretraining.md](pretraining.md) (`tools/pretraining_results.py`), compression in "
             "[compression.md](compression.md) (`tools/compression_results.py`).", ""]
    records = read_records()
    planned = [(run.key, seed) for run in runs for seed in run.seeds]
    planned += [(PARITY.key, seed) for seed in PARITY_SEEDS]
    missing = sum(1 for job in planned if job not in records)
    if missing:
        lines += [f"**Incomplete:** {missing} of {len(planned)} runs have not finished yet (rows with "
                  "fewer seeds than planned, or a dash). `python tools/glue_results.py` runs only what is missing.", ""]
    for task in dict.fromkeys(r.task for r in runs):
        metrics = HEADLINE[task]
        lines += [f"## {task}", "", "| run | lr | epochs | " + " | ".join(m.removeprefix("eval_") for m in metrics)
                  + " | n | note |", "|---|---|---|" + "---|" * len(metrics) + "---|---|"]
        commands = []
        for run in sorted((r for r in runs if r.task == task), key=lambda r: (r.name, -r.learning_rate)):
            results = [records[(run.key, s)]["metrics"] for s in run.seeds if (run.key, s) in records]
            cells = [mean_std([r[m] for r in results]) for m in metrics]
            note = "**collapsed** to the majority class" if collapsed(task, results) else ""
            lines.append(f"| {run.name} | {run.learning_rate:g} | {run.epochs:g} | " + " | ".join(cells)
                         + f" | {len(results)} | {note} |")
            commands.append(shown("bertkit " + " ".join(run.argv(SEEDS[0], data)), data))
        if task == "MRPC":
            for reference in REFERENCES:
                parity = [records[(reference.key, s)]["metrics"] for s in PARITY_SEEDS if (reference.key, s) in records]
                if parity:
                    note = "same rows, `bench/hf_reference.py`"
                    if reference is PARITY:
                        note = "**the parity reference**: " + note
                    lines.append(f"| transformers Trainer, MiniLM-L6 pretrained, {reference.name} | 2e-05 | 3 | "
                                 f"{mean_std([p['accuracy'] for p in parity])} | {mean_std([p['f1'] for p in parity])} "
                                 f"| {len(parity)} | {note} |")
            lines += ["", "MRPC dev majority class: accuracy 68.4, F1 81.2."]
            reference = [records[(PARITY.key, s)]["metrics"]["accuracy"] for s in PARITY_SEEDS
                         if (PARITY.key, s) in records]
            for key, batching in (("MRPC-minilm-lr2e-05-ep3-group_by_lengthfalse", "random batches, as transformers"),
                                  ("MRPC-minilm-lr2e-05-ep3", "length-grouped batches, bertkit's default")):
                ours = [records[(key, s)]["metrics"]["eval_accuracy"] for s in PARITY_SEEDS if (key, s) in records]
                if ours and reference:
                    gap = 100 * (statistics.mean(ours) - statistics.mean(reference))
                    lines += ["", f"**Parity ({batching}):** bertkit's mean accuracy with the seed's hyperparameters "
                              f"differs from transformers' Trainer (random batches, the same schedule) by {gap:+.1f} "
                              f"points (means over {len(ours)} and {len(reference)} seeds; the issue asks for at "
                              "most 1)."]
            lines += ["", "The schedule is the one difference in recipe between the two Trainers: with dropout off "
                      "and the same batches, both give the same logits after training within 1e-5 (measured: 5e-8) "
                      "under Google's schedule (`tests/training/test_trainer_vs_transformers.py`). transformers' "
                      "own `linear` schedule decays from the end of warmup rather than from step 0, which is about "
                      "10% more summed learning rate."]
            by_schedule = {ref.schedule: [records[(ref.key, s)]["metrics"]["accuracy"] for s in PARITY_SEEDS
                                          if (ref.key, s) in records] for ref in REFERENCES[:2]}
            if all(by_schedule.values()):
                google, own = (statistics.mean(by_schedule[k]) for k in ("google", "transformers"))
                lines[-1] += (f" On MRPC at 2e-5, transformers' Trainer scores {100 * own:.1f} with its own schedule "
                              f"and {100 * google:.1f} with Google's ({len(by_schedule['transformers'])} and "
                              f"{len(by_schedule['google'])} seeds).")
            if any((REFERENCES[2].key, s) in records for s in SEEDS):
                lines += ["", "transformers' `group_by_length` sampling is much worse at this learning rate: it sorts "
                          "each mega-batch of 896 rows longest first, so every epoch walks from long to short pairs; "
                          "bertkit's length-grouped sampler shuffles the batches it forms."]
        lines += ["", "<details><summary>commands (seed 1; $MINILM is the packaged checkpoint's directory)</summary>",
                  "", "```"] + commands + ["```", "</details>", ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(REPORT) as handle:  # several invocations may rewrite it at once
        handle.write("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--parity-seeds", type=int, default=len(PARITY_SEEDS),
                        help="seeds of the transformers reference run")
    args = parser.parse_args()
    data = require_data()
    if data is None:
        return 2
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    (OUTPUTS / "bert_tiny_config.json").write_text(json.dumps(BERT_TINY, indent=2))
    runs = planned_runs()
    if args.list:
        for run in runs:
            print("bertkit " + " ".join(run.argv(SEEDS[0], data)))
        return 0
    if not args.report_only:
        # MRPC first; then, in order of importance, every seed of one row before the next row.
        jobs = [(run, seed) for run in runs if run.task == "MRPC" for seed in run.seeds]
        jobs += [(run, seed) for run in runs if run.task != "MRPC" for seed in run.seeds]
        for seed in PARITY_SEEDS[: args.parity_seeds]:
            with claim(PARITY.key, seed) as mine:
                if mine:
                    hf_reference(PARITY, data, seed)
                    write_report(runs, data)
        for index, (run, seed) in enumerate(jobs):
            with claim(run.key, seed) as mine:
                if mine:
                    run_one(run, seed, data)
                    write_report(runs, data)
                    print(f"[{index + 1}/{len(jobs)}] {run.key} seed {seed} done", flush=True)
    write_report(runs, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
