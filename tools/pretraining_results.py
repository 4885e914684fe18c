"""Produce docs/pretraining.md: a BERT-Tiny pre-trained here, on this CPU, and what it is worth.

    python tools/pretraining_results.py                # run what is missing, then write the report
    python tools/pretraining_results.py --list         # the commands it would run
    python tools/pretraining_results.py --report-only  # rewrite the report from finished steps

Every step is an ordinary command (listed in the report), writing under outputs/pretraining/; a
finished step (its output present) is not run again, so an interrupted invocation resumes.

1. Corpus: tools/prepare_corpus.py turns ../shared/data/corpus into Google's input format, every
   10th Wikipedia article held out for evaluation.
2. Data: create_pretraining_data at 128 tokens (dupe_factor 5), 512 and 1024 tokens (dupe_factor 1).
   The tiny model's data uses an 8,192-piece WordPiece vocabulary learned from the training text
   (bertkit build_vocab); MiniLM's 1024-token data uses its own uncased vocab.
3. Phase 1: BERT-Tiny (L=2, H=128, A=2) from scratch at 128 tokens, in two runs: 1a the masked LM
   alone (--next_sentence_weight=0), 1b MLM + NSP; phase 2 continues at 512 tokens (the paper's
   two-phase schedule, so that positions 128-511 are trained). Pre-training runs without dropout
   and with initializer_range 0.05; fine-tuning uses dropout 0.1 (see BERT_TINY below).
4. Beyond 512: phase 2's model with --max_position_embeddings=1024, its rows 512-1023 made four ways
   (--position_init random, tile, hierarchical, interpolate), is scored on the held-out 1024-token
   text as it is (step 0) and after LONG_STEPS more steps on 1024-token sequences (3 seeds each):
   masked-LM accuracy by bucket of 128 positions, so beyond 512 and over all positions.
5. Fine-tuning: MRPC and SST-2 (3 epochs each, as in BERT's paper) from the pre-trained model and from scratch,
   3 seeds each at each rate of FINETUNE_LRS; each model is judged at its best rate.
`--part long` runs only step 4 (and its data, and MiniLM taken to 1024 positions), so that it can run
beside the fine-tuning on a second core once phase 2 is done; `--part probes` runs the three 2,000-step variants of phase 1a
that the report compares it with (NSP from the start; dropout; BERT's settings); `--part main` runs the rest.
Pre-training runs in bf16 autocast where the CPU has bf16 instructions and in fp32 elsewhere (emulated
bf16 was 10x slower than fp32 on an AVX2 CPU), so the commands listed in the report say which.
Needs ../shared/data (corpus, GLUE, the uncased vocab).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_common, which adds src/ and bench/

from report_common import ROOT, bertkit, mean_std, read_eval_results, require_data, run_command, shown  # noqa: E402, I001

from bertkit.checkpoint.surgery import POSITION_INITS  # noqa: E402
from bertkit.paths import minilm_dir  # noqa: E402
from bertkit.training.trainer import cpu_has_native_bf16  # noqa: E402

OUT = ROOT / "outputs" / "pretraining"
CORPUS = ROOT / "outputs" / "corpus"
REPORT = ROOT / "docs" / "pretraining.md"
PLOT = ROOT / "docs" / "pretraining_curves.png"
POSITIONS_PLOT = ROOT / "docs" / "pretraining_positions.png"
RECORDS = ROOT / "docs" / "pretraining_runs.jsonl"  # finished fine-tuning runs, committed
SEEDS = (1, 2, 3)
# BERT-Tiny, as fine-tuned (pre-trained and from scratch alike). initializer_range 0.05, not BERT's
# 0.02: 0.02 was chosen for H=768, and keeping std * sqrt(H) fixed gives 0.049 at H=128. On
# tools/positional_probe.py's neighbour task 0.05 learned positional attention within 600 steps and
# 0.02 did not; on the real corpus the two were not compared apart from NSP and dropout.
BERT_TINY = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "hidden_size": 128, "initializer_range": 0.05, "intermediate_size": 512,
             "max_position_embeddings": 512, "num_attention_heads": 2, "num_hidden_layers": 2,
             "type_vocab_size": 2, "vocab_size": 8192}
# Pre-trained without dropout, as Cramming (Geiping & Goldstein 2022) does on a small budget
# (probe_dropout measures dropout's own effect on phase 1a). Fine-tuning puts dropout back by
# loading the checkpoint with BERT_TINY's config.
PRETRAINING_CONFIG = {**BERT_TINY, "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}
BERT_DEFAULTS_CONFIG = {**BERT_TINY, "initializer_range": 0.02}  # for the probe of BERT's own settings
BERT_DEFAULTS_LR = 1e-3
CONFIGS = {"bert_tiny_config.json": BERT_TINY, "bert_tiny_pretraining_config.json": PRETRAINING_CONFIG,
           "bert_tiny_bert_defaults_config.json": BERT_DEFAULTS_CONFIG}
VOCAB = OUT / "vocab.txt"  # learned from the training text by the "vocab" step
PHASE1A_STEPS, PHASE1B_STEPS, LONG_STEPS = 2000, 8000, 150
LONG_LR, MINILM_LR = 5e-4, 1e-4  # the runs past 512 positions
PHASE2_STEPS = (PHASE1A_STEPS + PHASE1B_STEPS) // 9  # the paper: 90% of the steps at 128 tokens, 10% at 512
PHASE2_BATCH, PHASE2_LR = 16, 5e-4
PHASE1_LR = 3e-3  # BERT's settings at BERT_DEFAULTS_LR stayed on the plateau (probe_bert_defaults)
BF16 = cpu_has_native_bf16() is not False  # emulated bf16 is far slower than fp32
LONG_LENGTH, BUCKET = 1024, 128  # the runs past 512 positions, and the positions per bucket of their scores


@dataclass
class Step:
    name: str
    argv: list[str]  # a bertkit command, or ["python", "tools/..."]
    done: Path  # exists once the step has finished
    part: str = "main"  # "long": the runs past 512 positions, which nothing else waits for

    def command(self) -> list[str]:
        return [sys.executable, *self.argv[1:]] if self.argv[0] == "python" else bertkit(self.argv)


def data_step(name: str, source: Path, vocab: Path, max_seq_length: int, dupe_factor: int, seed: int) -> Step:
    predictions = round(max_seq_length * 0.15 / 10 + 0.5) * 10  # 20 at 128, 80 at 512, 160 at 1024
    out = OUT / "data" / name
    return Step(name, ["create_pretraining_data", f"--input_file={source}", f"--output_dir={out}",
                       f"--vocab_file={vocab}", "--do_lower_case=true", f"--max_seq_length={max_seq_length}",
                       f"--max_predictions_per_seq={predictions}", f"--dupe_factor={dupe_factor}",
                       f"--random_seed={seed}"], out / "index.json")


def pretrain_step(name: str, data: str, max_seq_length: int, steps: int, batch: int, learning_rate: float,
                  eval_every: int, *model: str, seed: int = 1) -> Step:
    predictions = round(max_seq_length * 0.15 / 10 + 0.5) * 10
    out = OUT / name
    return Step(name, ["run_pretraining", *model, f"--input_file={OUT / 'data' / ('train_' + data)}",
                       f"--eval_input_file={OUT / 'data' / ('heldout_' + data)}", "--do_train=true", "--do_eval=true",
                       f"--max_seq_length={max_seq_length}", f"--max_predictions_per_seq={predictions}",
                       f"--train_batch_size={batch}", f"--eval_batch_size={batch}", f"--num_train_steps={steps}",
                       f"--num_warmup_steps={steps // 10}", f"--learning_rate={learning_rate:g}",
                       f"--eval_steps={eval_every}", "--max_eval_steps=20", "--save_checkpoints_steps=100000",
                       f"--seed={seed}", *(["--bf16=true"] if BF16 else []), "--no_progress",
                       f"--output_dir={out}"], out / "model.safetensors")


def scratch_128(name: str, config: str, learning_rate: float, *flags: str) -> Step:
    """A PHASE1A_STEPS run from scratch at 128 tokens at a constant rate: phase 1a and the probes it is compared with."""
    return pretrain_step(name, "128", 128, PHASE1A_STEPS, 64, learning_rate, 250, f"--bert_config_file={OUT / config}",
                         f"--vocab_file={VOCAB}", *flags, "--scheduler=constant_with_warmup")


def step_line(step: Step) -> str:
    return " ".join(step.argv) if step.argv[0] == "python" else "bertkit " + " ".join(step.argv)


def plan(data: Path) -> list[Step]:
    uncased = data / "vocab" / "bert-base-uncased" / "vocab.txt"
    train, heldout = CORPUS / "corpus.txt", CORPUS / "heldout.txt"
    steps = [Step("corpus", ["python", "tools/prepare_corpus.py", f"--heldout_output={heldout}"], heldout),
             Step("vocab", ["build_vocab", f"--input_file={train}", f"--output_file={VOCAB}",
                            f"--vocab_size={BERT_TINY['vocab_size']}", "--no_progress"], VOCAB)]
    for length, dupe in ((128, 5), (512, 1)):
        steps.append(data_step(f"train_{length}", train, VOCAB, length, dupe, 12345))
        steps.append(data_step(f"heldout_{length}", heldout, VOCAB, length, 5, 54321))
    steps += [
        # Phase 1 in two runs: the masked LM alone at a constant rate until attention finds the
        # neighbouring tokens, then MLM + NSP (with NSP from the start it stayed on the plateau).
        scratch_128("phase1a_128", "bert_tiny_pretraining_config.json", PHASE1_LR, "--next_sentence_weight=0"),
        pretrain_step("phase1b_128", "128", 128, PHASE1B_STEPS, 64, PHASE1_LR, 250,
                      f"--init_checkpoint={OUT / 'phase1a_128'}"),
        pretrain_step("phase2_512", "512", 512, PHASE2_STEPS, PHASE2_BATCH, PHASE2_LR, 50,
                      f"--init_checkpoint={OUT / 'phase1b_128'}"),
    ]
    long = [data_step("train_1024", train, VOCAB, LONG_LENGTH, 1, 12345),
            data_step("heldout_1024", heldout, VOCAB, LONG_LENGTH, 5, 54321),
            data_step("train_1024_uncased", train, uncased, LONG_LENGTH, 1, 12345),
            data_step("heldout_1024_uncased", heldout, uncased, LONG_LENGTH, 5, 54321),
            # rows 512-1023 made each of the four ways, the same continued pre-training from each
            *[pretrain_step(position_run(init, seed), "1024", LONG_LENGTH, LONG_STEPS, 8, LONG_LR, 25,
                            f"--init_checkpoint={OUT / 'phase2_512'}", f"--max_position_embeddings={LONG_LENGTH}",
                            f"--position_init={init}", seed=seed)
              for init in POSITION_INITS for seed in SEEDS],
            # A model that does use its positions: MiniLM, whose 512 rows are trained (its MLM transform is
            # not in the checkpoint and starts random, so accuracy rises everywhere; the gap is the signal).
            pretrain_step("minilm_1024", "1024_uncased", LONG_LENGTH, LONG_STEPS, 4, MINILM_LR, 25,
                          f"--init_checkpoint={minilm_dir()}", f"--max_position_embeddings={LONG_LENGTH}")]
    for step in long:
        step.part = "long"
    # Why phase 1a looks as it does: the same run with NSP from the start, with dropout, and with BERT's settings.
    probes = [scratch_128("probe_with_nsp", "bert_tiny_pretraining_config.json", PHASE1_LR),
              scratch_128("probe_dropout", "bert_tiny_config.json", PHASE1_LR, "--next_sentence_weight=0"),
              scratch_128("probe_bert_defaults", "bert_tiny_bert_defaults_config.json", BERT_DEFAULTS_LR)]
    for step in probes:
        step.part = "probes"
    return steps + long + probes


def position_run(init: str, seed: int) -> str:
    """The continued pre-training of phase 2's model with its rows 512-1023 made by `init`."""
    return f"positions_{init}_seed{seed}"


# How each --position_init makes rows 512-1023 of the 1,024-row table (rows 0-511: phase 2's, kept
# except by interpolate, which stretches the whole table).
POSITION_INIT_TEXT = {"random": "drawn at random (the initializer's normal)", "tile": "copies of rows 0-511",
                      "hierarchical": "Su's hierarchical decomposition (alpha 0.4): row 512 + j from rows 1 and j",
                      "interpolate": "the trained table stretched linearly to 1,024 rows (all rows change)"}


def position_scores_needed() -> list[tuple[str, str, int]]:
    """(score file name, position_init, seed) of every model the comparison scores: phase 2's model
    extended each way before any training (step 0; only random's rows depend on the seed), and
    each continued run."""
    step0 = [(f"step0_{init}_seed{seed}", init, seed) for init in POSITION_INITS
             for seed in (SEEDS if init == "random" else SEEDS[:1])]
    return step0 + [(position_run(init, seed), init, seed) for init in POSITION_INITS for seed in SEEDS]


def position_counts(model, data, mask_id: int, batch_size: int = 8) -> dict[str, list[int]]:
    """Masked positions and correct predictions per bucket of BUCKET positions over every instance
    of `data` (a PretrainingDataset): all masked positions, and those that show [MASK]."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from bertkit.data.batching import PaddingCollator
    from bertkit.tasks.pretraining import pretraining_step

    buckets = LONG_LENGTH // BUCKET
    counts = {name: np.zeros(buckets, dtype=np.int64) for name in ("total", "correct", "mask_total", "mask_correct")}
    model.eval()
    with torch.inference_mode():
        for batch in DataLoader(data, batch_size=batch_size, collate_fn=PaddingCollator()):
            predicted, _, _, positions, shown = pretraining_step(model(**batch), batch)
            real = batch["labels"] != -100
            correct = real & (predicted == batch["labels"])
            bucket = positions // BUCKET
            at_mask = real & (shown == mask_id)
            for name, where in (("total", real), ("correct", correct), ("mask_total", at_mask),
                                ("mask_correct", correct & at_mask)):
                counts[name] += np.bincount(bucket[where].numpy(), minlength=buckets)[:buckets]
    return {name: values.tolist() for name, values in counts.items()}


def score_positions() -> None:
    """Score every model of the comparison that exists and has no score yet (OUT/positions/<name>.json)."""
    from bertkit.checkpoint.surgery import Surgery
    from bertkit.data.pretraining import PretrainingDataset
    from bertkit.heads import BertForPreTraining
    from bertkit.io_utils import atomic_write
    from bertkit.training.trainer import set_seed

    heldout = OUT / "data" / "heldout_1024"
    if not (heldout / "index.json").is_file() or not (OUT / "phase2_512" / "model.safetensors").is_file():
        return
    data = PretrainingDataset(heldout)
    mask_id = VOCAB.read_text(encoding="utf-8").splitlines().index("[MASK]")
    for name, init, seed in position_scores_needed():
        path = OUT / "positions" / f"{name}.json"
        trained = OUT / name / "model.safetensors"
        if path.is_file() or not (name.startswith("step0_") or trained.is_file()):
            continue
        if name.startswith("step0_"):
            set_seed(seed)  # as run_pretraining does before loading: step 0 is the continued run's start
            model = BertForPreTraining.from_pretrained(
                OUT / "phase2_512", surgery=Surgery(max_position_embeddings=LONG_LENGTH, position_init=init))
        else:
            model = BertForPreTraining.from_pretrained(OUT / name)
        print(f"scoring {name} on {heldout.name} by position", flush=True)
        counts = position_counts(model, data, mask_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(json.dumps({"position_init": init, "seed": seed, **counts}) + "\n")


def read_position_scores() -> dict[tuple[str, str], list[dict]]:
    """(when: "step0" or "trained", position_init) -> the scores of its seeds."""
    scores: dict[tuple[str, str], list[dict]] = {}
    for name, init, _ in position_scores_needed():
        path = OUT / "positions" / f"{name}.json"
        if path.is_file():
            scores.setdefault(("step0" if name.startswith("step0_") else "trained", init), []).append(
                json.loads(path.read_text()))
    return scores


def accuracy(score: dict, first: int = 0, last: int = LONG_LENGTH, at_mask: bool = False) -> float:
    """Masked-LM accuracy over the masked positions in [first, last), or those of them showing [MASK]."""
    prefix = "mask_" if at_mask else ""
    window = slice(first // BUCKET, last // BUCKET)
    return sum(score[prefix + "correct"][window]) / max(sum(score[prefix + "total"][window]), 1)


def spread(values: list[float]) -> str:
    return mean_std(values) if len(values) > 1 else f"{100 * values[0]:.1f}"


def positions_section() -> list[str]:
    """The four position_init options compared: table, verdict and plot."""
    scores = read_position_scores()
    if not scores:
        return []
    lines = ["### Positions beyond 512: four ways to make the new rows", "",
             f"Phase 2's BERT-Tiny (rows 0-511 trained) with `--max_position_embeddings={LONG_LENGTH}`, rows "
             f"512-{LONG_LENGTH - 1} made by each `--position_init`, scored on every held-out {LONG_LENGTH}-token "
             f"instance (heldout_1024) as it is (step 0: what works out of the box) and after {LONG_STEPS} steps of "
             f"continued pre-training on {LONG_LENGTH}-token sequences (batch 8, lr {LONG_LR:g}; each seed also "
             "draws random's rows and orders the batches). Masked-LM accuracy ×100, mean ± std over the seeds; "
             "`[MASK]` columns count only the masked positions that show [MASK].", "",
             "| position_init | rows 512-1023 | step 0: beyond 512 | step 0: all | step 0: [MASK] beyond 512 | "
             f"after {LONG_STEPS} steps: beyond 512 | all | [MASK] beyond 512 | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    means = {}
    for init in POSITION_INITS:
        cells = []
        for when in ("step0", "trained"):
            runs = scores.get((when, init), [])
            values = [[accuracy(s, first=512) for s in runs], [accuracy(s) for s in runs],
                      [accuracy(s, first=512, at_mask=True) for s in runs]]
            cells += [spread(v) if v else "–" for v in values]
            if runs:
                positions = sum(sum(s["total"][512 // BUCKET:]) for s in runs)  # pooled over the seeds
                means[when, init] = (sum(values[0]) / len(values[0]), max(values[0]) - min(values[0]), positions)
        seeds = ", ".join(str(s["seed"]) for s in scores.get(("trained", init), []))
        lines.append(f"| {init} | {POSITION_INIT_TEXT[init]} | " + " | ".join(cells) + f" | {seeds or '–'} |")
    lines += [""]
    for when, text in (("step0", "At step 0"), ("trained", f"After {LONG_STEPS} steps")):
        ranked = sorted(((means[when, init], init) for init in POSITION_INITS if (when, init) in means), reverse=True)
        if len(ranked) == len(POSITION_INITS):
            ((best, best_range, n_best), first), ((second, second_range, n_second), runner_up) = ranked[:2]
            # A lead must beat both noises: the seeds' and that of the held-out sample (binomial).
            error = math.sqrt(best * (1 - best) / n_best + second * (1 - second) / n_second)
            clear = best - second > max(best_range, second_range, 2 * error)
            lines.append(f"- {text}, beyond 512: {first} is best ({100 * best:.1f}), "
                         f"{100 * (best - second):.1f} points ahead of {runner_up}: "
                         + ("more than the seeds' range and twice the held-out sample's standard error, so a real "
                            "lead." if clear else "within the seeds' range or the held-out sample's noise, so not a "
                            "clear lead."))
    lines += ["", f"![masked-LM accuracy by position]({POSITIONS_PLOT.name})", ""]
    return lines


def plot_positions(path: Path) -> None:
    """Accuracy by bucket of positions, one line per position_init, at step 0 and after continued pre-training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scores = read_position_scores()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    starts = np.arange(0, LONG_LENGTH, BUCKET)
    for axis, when, title in ((axes[0], "step0", "step 0 (no further training)"),
                              (axes[1], "trained", f"after {LONG_STEPS} steps at {LONG_LENGTH} tokens")):
        for index, init in enumerate(POSITION_INITS):
            runs = scores.get((when, init), [])
            if not runs:
                continue
            by_bucket = 100 * np.array([[accuracy(s, start, start + BUCKET) for start in starts] for s in runs])
            axis.errorbar(starts + BUCKET / 2 + (index - 1.5) * 6, by_bucket.mean(0),
                          yerr=by_bucket.std(0) if len(runs) > 1 else None, marker="o", capsize=3,
                          label=f"{init} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        axis.axvline(512, color="gray", linestyle="--", linewidth=0.8)
        axis.set(title=title, xlabel=f"position (buckets of {BUCKET})", xticks=list(starts) + [LONG_LENGTH])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("held-out masked-LM accuracy (%)")
    fig.suptitle(f"BERT-Tiny taken from 512 to {LONG_LENGTH} positions: the new rows made four ways")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


FINETUNE_LR = 5e-4  # the grid's rate whose runs' keys carry no -lr suffix (the records predate the grid)


@dataclass
class FineTune:
    task: str
    model: str  # "pretrained" or "scratch"
    epochs: int
    learning_rate: float = FINETUNE_LR

    @property
    def key(self) -> str:
        suffix = "" if self.learning_rate == FINETUNE_LR else f"-lr{self.learning_rate:g}"
        return f"{self.task}-tiny-{self.model}{suffix}"

    def argv(self, seed: int, data: Path) -> list[str]:
        config = f"--bert_config_file={OUT / 'bert_tiny_config.json'}"  # with dropout, unlike pre-training
        model = ([f"--init_checkpoint={OUT / 'phase2_512'}", config] if self.model == "pretrained" else
                 [config, f"--vocab_file={VOCAB}"])
        return ["run_classifier", f"--task_name={self.task}", "--do_train=true", "--do_eval=true",
                f"--data_dir={data / 'glue' / self.task}", *model, "--max_seq_length=128", "--train_batch_size=32",
                f"--learning_rate={self.learning_rate:g}", f"--num_train_epochs={self.epochs}", f"--seed={seed}",
                "--save_checkpoints_steps=100000", "--no_progress",
                f"--output_dir={OUT / 'finetune' / self.key / f'seed{seed}'}"]

    def shown_command(self, seed: int, data: Path) -> str:
        return shown("bertkit " + " ".join(self.argv(seed, data)), data)


# Each model gets the same small grid of rates and is judged at its best: pre-training grows the weights'
# scale (weight_scale_note measures it), so one shared rate would favour one side.
FINETUNE_LRS = (1e-4, FINETUNE_LR, 1e-3)
FINETUNES = [FineTune(task, model, epochs, lr) for lr in FINETUNE_LRS
             for task, epochs in (("MRPC", 3), ("SST-2", 3)) for model in ("pretrained", "scratch")]


def read_records(data: Path) -> dict[tuple[str, int], dict]:
    """The finished fine-tuning runs whose recorded command is the one FINETUNES gives now, so that a
    changed setting (epochs, rate, checkpoint) runs again instead of reporting the old result."""
    if not RECORDS.is_file():
        return {}
    current = {(run.key, seed): run.shown_command(seed, data) for run in FINETUNES for seed in SEEDS}
    return {(r["key"], r["seed"]): r for r in map(json.loads, RECORDS.read_text().splitlines())
            if current.get((r["key"], r["seed"])) == r.get("command")}


def phase2_fingerprint() -> str | None:
    """The first 16 hex digits of the SHA-256 of phase 2's weights: each pre-trained fine-tuning record
    carries it, so that the report can say which rows came from another run's phase-2 model."""
    weights = OUT / "phase2_512" / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.is_file() else None


def provenance_note(records: dict[tuple[str, int], dict]) -> list[str]:
    """Recorded runs are kept when pre-training is re-run, so say which pre-trained rows came from
    another phase-2 model than the one this report describes."""
    current = phase2_fingerprint()
    pretrained = [r for (key, _), r in records.items() if "-tiny-pretrained" in key]
    other = [r for r in pretrained if r.get("phase2_sha256") != current]
    if not other:
        return []
    return [f"{len(other)} of the {len(pretrained)} pre-trained runs were fine-tuned from the phase-2 model of an "
            "earlier run of this script (the same commands and data), not from the one in the tables above: recorded "
            f"runs are kept when pre-training is run again. Deleting their lines from `docs/{RECORDS.name}` makes the "
            "script fine-tune them again.", ""]


def read_metrics(name: str) -> list[dict]:
    path = OUT / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# The runs of the length schedule, in order: the curves put them end to end.
SCHEDULE = ("phase1a_128", "phase1b_128", "phase2_512")
RUN_LABELS = {"phase1a_128": "phase 1a: MLM only, 128 tokens", "phase1b_128": "phase 1b: MLM + NSP, 128 tokens",
              "phase2_512": "phase 2: MLM + NSP, 512 tokens"}


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    offset = 0
    for name in SCHEDULE:
        rows = read_metrics(name)
        evals = [r for r in rows if r["event"] == "eval"]
        train = [r for r in rows if r["event"] == "train"]
        label = RUN_LABELS[name]
        steps = [offset + r["step"] for r in evals]
        line, = left.plot(steps, [100 * r["eval_masked_lm_accuracy"] for r in evals], "-", label=label + ", all")
        if evals and "eval_masked_lm_accuracy_at_mask" in evals[0]:
            left.plot(steps, [100 * r["eval_masked_lm_accuracy_at_mask"] for r in evals], ":", color=line.get_color(),
                      label=label + ", at [MASK]")
        middle.plot(steps, [100 * r["eval_next_sentence_accuracy"] for r in evals], "-", label=label)
        right.plot([offset + r["step"] for r in train], [r["loss"] for r in train], "-", label=label, linewidth=0.8)
        offset += max((r["step"] for r in rows), default=0)
    left.set(title="held-out masked LM accuracy (%)", xlabel="step")
    middle.set(title="held-out next-sentence accuracy (%)", xlabel="step")
    right.set(title="training loss (MLM; + NSP from phase 1b)", xlabel="step")
    for axis in (left, middle, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PROBES = {"phase1a_128": f"phase 1a: masked LM only, init {PRETRAINING_CONFIG['initializer_range']:g}, dropout "
                         f"{PRETRAINING_CONFIG['hidden_dropout_prob']:g}, lr {PHASE1_LR:g}",
          "probe_with_nsp": "the same with NSP from the start (probe_with_nsp)",
          "probe_dropout": f"the same with dropout {BERT_TINY['hidden_dropout_prob']:g} (probe_dropout)",
          "probe_bert_defaults": f"BERT's settings: MLM + NSP, init {BERT_DEFAULTS_CONFIG['initializer_range']:g}, "
                                 f"dropout {BERT_DEFAULTS_CONFIG['hidden_dropout_prob']:g}, lr {BERT_DEFAULTS_LR:g} "
                                 "(probe_bert_defaults)"}


def phase2_note() -> list[str]:
    """Phase 2's accuracy falls at first: its held-out text puts most masked positions on rows phase 1 never saw."""
    files = [OUT / name / "eval_results.txt" for name in ("phase1b_128", "phase2_512")]
    if not all(f.is_file() for f in files):
        return []
    before, after = (read_eval_results(f).get("eval_masked_lm_accuracy_at_mask") for f in files)
    first = next((r.get("eval_masked_lm_accuracy_at_mask") for r in read_metrics("phase2_512") if r["event"] == "eval"),
                 None)
    if None in (before, after, first):
        return []
    return [f"Phase 2's held-out sequences are 512 tokens long, so most masked positions sit at 128-511, rows of the "
            f"position table that phase 1 never trained. Accuracy at [MASK] there is {100 * first:.1f} at phase 2's "
            f"first evaluation and {100 * after:.1f} after its {PHASE2_STEPS:,} steps (a tenth of the schedule, as in "
            f"the paper, but only {PHASE2_STEPS * PHASE2_BATCH:,} sequences), against {100 * before:.1f} for phase 1b on "
            "128-token text. Why is not settled: the new rows may face the plateau that phase 1 left only after "
            f"1,250 steps at lr {PHASE1_LR:g} (phase 2 runs at {PHASE2_LR:g}), or two heads may spread their "
            "attention too thin over 512 tokens. Fine-tuning at 128 tokens uses rows 0-127.", ""]


def recipe_lines() -> list[str]:
    """Why phase 1 starts without NSP: [MASK] accuracy of phase 1a against the probes, step by step."""
    curves = {name: {r["step"]: r.get("eval_masked_lm_accuracy_at_mask") for r in read_metrics(name)
                     if r["event"] == "eval"} for name in PROBES}
    if not all(PHASE1A_STEPS in curve for curve in curves.values()):  # a probe still running, or not run
        return []
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))[1::2]
    lines = ["### Why phase 1 starts with the masked LM alone", "",
             "A small BERT first sits on a plateau where it predicts the most frequent pieces (\"the\", \",\") at "
             "every [MASK] and copies the kept tokens: about 5% at [MASK]. Its attention is not yet positional (the "
             "weight on the neighbouring tokens equals uniform attention), while a masked piece is told mostly by "
             "its neighbours; it leaves the plateau once attention finds them. Held-out accuracy at [MASK] (×100) "
             "by step, for 2,000-step runs from scratch on the same shards, constant rate after 10% warmup "
             "(`--part probes` runs the probes):", "",
             "| run | " + " | ".join(f"{step:,}" for step in steps) + " |", "|---|" + "---:|" * len(steps)]
    for name, what in PROBES.items():
        lines.append(f"| {what} | " + " | ".join(f"{100 * curves[name][step]:.1f}" for step in steps) + " |")
    last = max(set.intersection(*(set(c) for c in curves.values())))
    without, with_dropout = 100 * curves["phase1a_128"][last], 100 * curves["probe_dropout"][last]
    effect = ("slows the escape" if with_dropout < without - 1 else "makes little difference"
              if with_dropout <= without + 1 else "speeds the escape")
    return lines + ["", "NSP from the start keeps the model on the plateau: its gradient through the pooled [CLS] "
                    f"competes for the two heads. Dropout {BERT_TINY['hidden_dropout_prob']:g} {effect}: "
                    f"{with_dropout:.1f} at [MASK] by step {last:,} against {without:.1f} without it. "
                    "The initializer_range rests on weaker evidence. "
                    "`tools/positional_probe.py` trains BERT-Tiny on sequences where each token is a function of the "
                    "one before it, which only attention to the neighbour solves: with initializer_range 0.02 "
                    "bertkit's model stayed at chance for 600 steps, with 0.05 it left chance at about step 500; "
                    "transformers' BertForMaskedLM at 0.02 also left at about 500. (bertkit initialises as Google "
                    "does, from a normal truncated at 2σ, whose spread is 0.88 of the nominal std; transformers "
                    "uses an untruncated normal.) 0.05 also keeps std·√H at its BERT-Base value (0.02·√768 ≈ "
                    "0.05·√128). Dropout is left out of pre-training, as Cramming (Geiping & Goldstein, 2022) does "
                    "on a small budget, and put back for fine-tuning.", ""]


def write_report(steps: list[Step], data: Path) -> None:
    lines = ["# Pre-training a BERT-Tiny on this CPU", "",
             "Produced by `python tools/pretraining_results.py`; every command is listed at the end. "
             "The machine is a 2-core CPU; the steps ran with one thread each, beside other work.", ""]
    stats = OUT / "corpus_stats.txt"
    if stats.is_file():
        lines += ["## Corpus", "", "`tools/prepare_corpus.py` (WikiText-2 raw valid and test, 13 Gutenberg books; "
                  "one sentence per line, a blank line between documents; every 10th Wikipedia article held out). "
                  "WordPieces are counted with the bert-base uncased vocab:", "", "```",
                  shown(stats.read_text().strip(), data), "```", ""]
    data_rows = []
    for step in steps:
        if step.name.startswith(("train_", "heldout_")) and step.done.is_file():
            index = json.loads(step.done.read_text())
            settings = index["settings"]
            data_rows.append(f"| {step.name} | {settings['max_seq_length']} | {settings['dupe_factor']} | "
                             f"{index['num_instances']:,} | {index['num_masked_lm']:,} | "
                             f"{index['num_random_next'] / index['num_instances']:.3f} |")
    if data_rows:
        lines += ["## Pre-training data (`bertkit create_pretraining_data`)", "",
                  "| shards | max_seq_length | dupe_factor | instances | masked positions | random-next share |",
                  "|---|---:|---:|---:|---:|---:|", *data_rows, "",
                  "The random-next share is above one half as in Google's script: a segment A that uses the whole "
                  "chunk gets a random B from another document.", ""]
    phases = []
    for name, what in (("phase1a_128", f"phase 1a: from scratch, masked LM only (--next_sentence_weight=0), "
                                       f"128 tokens, batch 64, lr {PHASE1_LR:g} constant"),
                       ("phase1b_128", f"phase 1b: continued, MLM + NSP, 128 tokens, batch 64, lr {PHASE1_LR:g}"),
                       ("phase2_512", f"phase 2: continued, MLM + NSP, 512 tokens, batch {PHASE2_BATCH}, "
                                      f"lr {PHASE2_LR:g}"),
                       ("minilm_1024", f"MiniLM-L6, positions extended to 1024, 1024 tokens, batch 4, lr {MINILM_LR:g}")):
        done = OUT / name / "eval_results.txt"
        if not done.is_file():
            continue
        results = read_eval_results(done)
        seconds = (OUT / name / "step_seconds.txt")
        wall = f"{float(seconds.read_text()) / 60:.0f}" if seconds.is_file() else "–"
        optional = [results.get(f"eval_masked_lm_accuracy_{part}") for part in ("at_mask", "beyond_512")]
        at_mask, beyond = (f"{100 * value:.1f}" if value is not None else "" for value in optional)
        phases.append(f"| {what} | {int(results['global_step'])} | {wall} | "
                      f"{100 * results['eval_masked_lm_accuracy']:.1f} | {at_mask} | "
                      f"{results['eval_masked_lm_loss']:.2f} | {100 * results['eval_next_sentence_accuracy']:.1f} | "
                      f"{beyond} |")
    if phases:
        lines += ["## Pre-training (`bertkit run_pretraining`)", "",
                  f"BERT-Tiny: L=2, H=128, A=2, intermediate 512, an {BERT_TINY['vocab_size']:,}-piece WordPiece vocab "
                  "learned from the training text by `bertkit build_vocab` (1.5 M parameters, most of them the word "
                  "embeddings the MLM decoder shares). Metrics on the held-out articles (×100 but the loss); "
                  "`at [MASK]` is `masked_lm_accuracy_at_mask`, the accuracy at the masked positions that show "
                  "[MASK], the only ones where the model must use the context:", "",
                  "| run | steps | minutes | masked_lm_accuracy | at [MASK] | masked_lm_loss | next_sentence_accuracy | "
                  "masked_lm_accuracy_beyond_512 |", "|---|---:|---:|---:|---:|---:|---:|---:|", *phases, "",
                  *phase2_note(), *recipe_lines()]
    if PLOT.is_file():
        lines += [f"![MLM and NSP accuracy curves]({PLOT.name})", ""]
    lines += positions_section()
    evals = [r for r in read_metrics("minilm_1024") if r["event"] == "eval"]
    if evals:
        lines += ["### Positions beyond 512: all-MiniLM-L6-v2", "",
                  f"all-MiniLM-L6-v2 with `--max_position_embeddings={LONG_LENGTH}` (rows 0-511 copied, rows "
                  f"512-{LONG_LENGTH - 1} random), pre-training continued on {LONG_LENGTH}-token sequences. Held-out "
                  "MLM accuracy at masked positions 512 and later, and over all positions. MiniLM's checkpoint has no "
                  "MLM transform (sentence-transformers drops it), so the head starts random and accuracy rises "
                  "everywhere at first; what matters is whether positions 512 and later keep up with the rest."
                  + ("" if (OUT / "minilm_1024" / "model.safetensors").is_file() else
                     " (Unfinished: the evaluations so far; the script runs it again from the start.)"), "",
                  "| step | masked_lm_accuracy_beyond_512 | masked_lm_accuracy |", "|---:|---:|---:|"]
        lines += [f"| {r['step']} | {100 * r['eval_masked_lm_accuracy_beyond_512']:.1f} | "
                  f"{100 * r['eval_masked_lm_accuracy']:.1f} |" for r in evals]
        lines.append("")
    records = read_records(data)
    if records:
        lines += ["## Fine-tuning: pre-trained against from scratch", "",
                  "`bertkit run_classifier`, the same BERT-Tiny architecture (dropout 0.1), max_seq_length 128, "
                  "batch 32, dev-set scores ×100, mean ± std over the seeds. MRPC's majority class scores 68.4 "
                  "accuracy / 81.2 F1; SST-2's 50.9. Each model runs the same grid of rates and is judged at its "
                  "best, as Google chose per task for its small BERTs. " + weight_scale_note(),
                  "",
                  "For scale, Google's BERT-Tiny (pre-trained on BooksCorpus and Wikipedia for far longer; best of "
                  "rates 3e-4 to 3e-5 and five batch sizes, 4 epochs) scores 83.2 on SST-2 and 71.1 MRPC accuracy, "
                  "on the GLUE test sets rather than dev; the seed article reports 71.1 against 68.4 for MRPC from "
                  "scratch.", "",
                  "| task | epochs | lr | model | accuracy | F1 | seeds |", "|---|---:|---:|---|---:|---:|---|"]
        accuracies: dict[tuple[str, float], dict[str, list[float]]] = {}
        for run in FINETUNES:
            seeds = [seed for seed in SEEDS if (run.key, seed) in records]
            results = [records[(run.key, seed)]["metrics"] for seed in seeds]
            if not results:
                continue
            accuracies.setdefault((run.task, run.learning_rate), {})[run.model] = [r["eval_accuracy"] for r in results]
            f1 = mean_std([r["eval_f1"] for r in results]) if run.task == "MRPC" else ""
            lines.append(f"| {run.task} | {run.epochs} | {run.learning_rate:g} | {run.model} | "
                         f"{mean_std([r['eval_accuracy'] for r in results])} | {f1} | "
                         f"{', '.join(map(str, seeds))} |")
        lines += ["", *finetune_verdicts(accuracies), "", *provenance_note(records)]
    commands = [shown(step_line(step), data) for step in steps]
    commands += [run.shown_command(1, data) for run in FINETUNES]
    lines += ["<details><summary>commands, in order (fine-tuning shown for seed 1; $MINILM is the packaged "
              "checkpoint's directory)</summary>", "", "```",
              *commands, "```", "</details>", ""]
    REPORT.write_text("\n".join(lines))


def weight_scale_note() -> str:
    """How far pre-training moved the weight matrices' scale from initialisation: LayerNorm makes the layers
    it follows blind to that scale, so the same rate is a smaller step for the pre-trained model."""
    weights = OUT / "phase2_512" / "model.safetensors"
    if not weights.is_file():
        return ""
    import torch
    from safetensors.torch import load_file

    from bertkit.config import BertConfig
    from bertkit.heads import BertForPreTraining

    torch.manual_seed(0)
    initial = BertForPreTraining(BertConfig.from_dict(PRETRAINING_CONFIG)).state_dict()
    ratios = sorted(float(tensor.float().std() / initial[name].std()) for name, tensor in load_file(weights).items()
                    if tensor.dim() == 2 and name.startswith("bert."))
    return (f"A shared rate would favour one side: pre-training grew the weight matrices of the embeddings and "
            f"encoder to {ratios[0]:.1f}-{ratios[-1]:.1f}x their initial spread (median {ratios[len(ratios) // 2]:.1f}x), so "
            "the same rate moves the pre-trained model less.")


def finetune_verdicts(accuracies: dict[tuple[str, float], dict[str, list[float]]]) -> list[str]:
    """One line per task: each model at its best rate of the grid (by mean dev accuracy), then the gap."""
    lines = []
    for task in dict.fromkeys(task for task, _ in accuracies):
        best = {}
        for model in ("pretrained", "scratch"):
            complete = {lr: scores for (t, lr), by_model in accuracies.items() if t == task
                        for m, scores in by_model.items() if m == model and len(scores) == len(SEEDS)}
            if complete:
                lr, scores = max(complete.items(), key=lambda item: sum(item[1]))
                best[model] = (lr, 100 * sum(scores) / len(scores))
        if len(best) < 2:
            continue
        gap = best["pretrained"][1] - best["scratch"][1]
        verdict = ("makes no clear difference" if abs(gap) < 1 else  # the seeds spread about a point
                   "helps" if gap > 0 else "hurts")
        lines.append(f"- {task}, each model at its best rate (pre-trained {best['pretrained'][0]:g}, scratch "
                     f"{best['scratch'][0]:g}): pre-training {verdict}, {best['pretrained'][1]:.1f} against "
                     f"{best['scratch'][1]:.1f} accuracy ({gap:+.1f} points).")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--part", choices=("main", "long", "probes"), help="run only this part (default: all)")
    args = parser.parse_args()
    data = require_data(minilm=False)
    if data is None:
        return 2
    steps = plan(data)
    if args.list:
        for step in steps:
            print(step_line(step))
        for finetune in FINETUNES:
            print("bertkit " + " ".join(finetune.argv(1, data)))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, config in CONFIGS.items():
        (OUT / name).write_text(json.dumps(config, indent=2))
    if not args.report_only:
        for step in steps:
            if args.part in (None, step.part) and not step.done.is_file():
                seconds, stdout = run_command(step.name, step.command())
                if step.name == "corpus":
                    (OUT / "corpus_stats.txt").write_text(stdout)
                if step.argv[0] == "run_pretraining":
                    (OUT / step.name / "step_seconds.txt").write_text(f"{seconds:.1f}\n")
                    plot(PLOT)
                write_report(steps, data)
        for seed in SEEDS if args.part in (None, "main") else ():
            for finetune in FINETUNES:
                if (finetune.key, seed) in read_records(data):
                    continue
                argv = finetune.argv(seed, data)
                seconds, _ = run_command(f"{finetune.key} seed {seed}", bertkit(argv))
                metrics = read_eval_results(OUT / "finetune" / finetune.key / f"seed{seed}" / "eval_results.txt")
                with open(RECORDS, "a", encoding="utf-8") as handle:
                    provenance = {"phase2_sha256": phase2_fingerprint()} if finetune.model == "pretrained" else {}
                    handle.write(json.dumps({"key": finetune.key, "seed": seed, "metrics": metrics,
                                             "wall_seconds": round(seconds, 1), **provenance,
                                             "command": finetune.shown_command(seed, data)}) + "\n")
                write_report(steps, data)
    if not args.report_only and args.part in (None, "long"):
        score_positions()
    if (OUT / SCHEDULE[0] / "metrics.jsonl").is_file():
        plot(PLOT)
    if read_position_scores():
        plot_positions(POSITIONS_PLOT)
    write_report(steps, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
