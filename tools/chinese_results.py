"""Produce docs/chinese.md: a small BERT with the Chinese vocabulary, fine-tuned on ChnSentiCorp and
on Chinese NER from scratch and after task-adaptive masked-LM pre-training (with and without
Chinese whole-word masking), beside a TF-IDF + logistic regression baseline.

    python tools/chinese_results.py                      # run what is missing (in priority order), then the report
    python tools/chinese_results.py --budget_minutes 60  # start no new run after 60 minutes
    python tools/chinese_results.py --seed 1             # one seed's runs only
    python tools/chinese_results.py --only ner           # one task's fine-tunings (csc, ner) and what they need
    python tools/chinese_results.py --report-only        # rewrite docs/chinese.md from finished runs
    python tools/chinese_results.py --list               # the commands, in the order they run

Every step is an ordinary bertkit command (listed in the report) writing to outputs/chinese/<key>/;
finished steps are recorded in docs/chinese_runs.jsonl (committed) and not run again, so a later
invocation completes the table. Needs ../shared/data (chinese/ and vocab/bert-base-chinese/),
scikit-learn (the baseline) and jieba (whole-word masking: pip install 'bertkit[zh]').

There is no pretrained Chinese checkpoint, so every model starts from a random initialisation of
examples/bert_chinese_tiny_config.json (BERT-Tiny's shape: 2 layers, hidden size 128, with the
21,128-entry bert-base-chinese vocabulary). The pre-trained arms first train a masked LM on the
tasks' own training texts (task-adaptive pre-training, Gururangan et al. 2020): the 9,600
ChnSentiCorp training reviews and the 4,636 sentences of the NER training file, one corpus for
both tasks, once with character masking and once with Chinese whole-word masking (jieba's words).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_common, which adds src/ and bench/

from report_common import ROOT, bertkit, mean_std, read_eval_results, require_data, run_command, shown  # noqa: E402, I001

OUTPUTS = ROOT / "outputs" / "chinese"
REPORT = ROOT / "docs" / "chinese.md"
RECORDS = ROOT / "docs" / "chinese_runs.jsonl"
CONFIG = ROOT / "examples" / "bert_chinese_tiny_config.json"
SEEDS = (1, 2, 3)
# The CPU bounds: every run uses one thread (OMP_NUM_THREADS=1) of the 2-core AVX2 EPYC, the other core
# being someone else's. Measured there on one idle thread, at 64 tokens: a fine-tuning step of 32
# (BERT-Tiny shape) takes 0.10 s (ChnSentiCorp and NER alike), a masked-LM step of 32 with 10
# predictions each over the 21,128-entry vocabulary 0.22 s. Hence 3 epochs of fine-tuning (900 steps of
# ChnSentiCorp, 570 of NER's 6,080 windows: 1.5 and 1 minutes a run with start-up and evaluation) and
# 6,000 masked-LM steps per pre-training (22 minutes; dupe_factor 5, so that they are about 1.6
# passes over differently masked copies rather than 8 over one): the whole table in about 100 minutes.
# An earlier version ran 60 masked-LM steps at lr 2e-3 (6 warm-up): the model was still on the
# unigram plateau, every token's last-layer vector nearly the same (std across tokens 0.03; 0.79 at
# random initialisation), and fine-tuning from it stayed at chance (loss 0.69) at lr 2e-3 and 2e-4
# alike. After 1,500 steps at lr 1e-3 it had left that plateau (std 0.73) and fine-tuned. lr 1e-3 for
# fine-tuning every arm: in 300-step trials it beat 2e-4 from scratch (85.1 vs 82.5 test) and from
# the 1,500-step masked LM (77.6 vs 76.3).
PRETRAIN = dict(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=5, batch_size=32, steps=6000,
                learning_rate=1e-3, warmup_steps=600)
CSC = dict(max_seq_length=64, batch_size=32, steps=900, learning_rate=1e-3)  # 3 epochs of 9,600 reviews
NER = dict(max_seq_length=64, batch_size=32, steps=570, learning_rate=1e-3)  # 3 epochs of 6,080 windows
NER_WINDOWS = 6080  # the 4,636 training sentences cut into windows of max_seq_length 64
STEP_SECONDS = {"fine-tuning": 0.10, "masked LM": 0.22}  # measured, one thread, 32 x 64 (the report says so)
ARMS = {"scratch": None, "tapt": "pretrain-char", "tapt-wwm": "pretrain-wwm"}  # arm -> the pre-trained model
ARM_NAMES = {"scratch": "from scratch", "tapt": "task-adaptive MLM, character masking",
             "tapt-wwm": "task-adaptive MLM, whole-word masking (jieba)"}
# The page's how-to: commands a user can copy, on the shared data or on files of their own.
GUIDE = """## Commands

Everything below runs on the files in `../shared/data/chinese/` (see its README) with the
`bert-base-chinese` vocabulary; put your own files in their place. `$ZH` is
`../shared/data/vocab/bert-base-chinese/vocab.txt`, `$DATA` is `../shared/data/chinese`.

**Sentiment (ChnSentiCorp, `label<TAB>text_a` TSV files)**, a small BERT from scratch
(`run_classifier` reads CSV, TSV or JSONL of your own; see its `--help`):

```
bertkit run_classifier --train_file $DATA/chnsenticorp/train.tsv --validation_file $DATA/chnsenticorp/dev.tsv \\
    --test_file $DATA/chnsenticorp/test.tsv --text_column text_a --label_column label \\
    --do_train --do_eval --do_predict --bert_config_file examples/bert_chinese_tiny_config.json --vocab_file $ZH \\
    --max_seq_length 64 --train_batch_size 32 --learning_rate 1e-3 --num_train_epochs 3 --output_dir /tmp/chnsenticorp
```

**Named entities, one character per line** (`中 B-ORG`, a blank line between sentences). The tag
scheme (IOB1, IOB2 or BIOES) is detected from the training file and recorded in the model's
`config.json` (`label_scheme`; IOB1 is learnt as IOB2), with `word_unit: char` for a file of
single characters, so that `predict` and `serve` cut raw text into characters the same way. JSONL
files as transformers' datasets hold NER work too: `{"tokens": [...], "ner_tags": [...]}`, tags as
strings or as integers with `--label_list O,B-PER,I-PER,...`.

```
bertkit run_ner --train_file $DATA/ner/test.txt --eval_file $DATA/ner/dev.txt --do_train --do_eval \\
    --bert_config_file examples/bert_chinese_tiny_config.json --vocab_file $ZH \\
    --max_seq_length 64 --train_batch_size 32 --learning_rate 1e-3 --num_train_epochs 3 --output_dir /tmp/zh_ner
bertkit predict --model /tmp/zh_ner "新华社记者在北京报道。"     # entities: text[start:end] is each word
bertkit serve --model zh=/tmp/zh_ner --port 8080                  # then:
curl -s localhost:8080/predict -H 'content-type: application/json' -d '{"inputs": "我在上海工作。"}'
```

**Task-adaptive pre-training** (a masked LM on the task's own texts, then fine-tuning from it).
One review or sentence per line; `--one_document_per_line` makes each line a document and
`--split_sentences` cuts it into sentences after 。！？ (and ASCII !?, …). Chinese whole-word
masking (Cui et al., Chinese-BERT-wwm) masks all the characters of a word together, with word
boundaries from jieba (`pip install 'bertkit[zh]'`); without `--word_segmenter`, BERT's tokenizer
makes every CJK character a word, and whole-word masking masks single characters.

```
cut -f2 $DATA/chnsenticorp/train.tsv | tail -n +2 > /tmp/reviews.txt
bertkit create_pretraining_data --input_file /tmp/reviews.txt --output_dir /tmp/zh_shards --vocab_file $ZH \\
    --one_document_per_line --split_sentences --do_whole_word_mask --word_segmenter jieba \\
    --max_seq_length 64 --max_predictions_per_seq 10 --dupe_factor 5
bertkit run_pretraining --input_file /tmp/zh_shards --output_dir /tmp/zh_mlm --do_train --do_eval \\
    --bert_config_file examples/bert_chinese_tiny_config.json --vocab_file $ZH --max_seq_length 64 \\
    --max_predictions_per_seq 10 --train_batch_size 32 --num_train_steps 6000 --num_warmup_steps 600 \\
    --learning_rate 1e-3 --next_sentence_weight 0
bertkit predict --model /tmp/zh_mlm "这家酒店的服务很[MASK]。"      # fill-mask
bertkit run_classifier ... --init_checkpoint /tmp/zh_mlm              # fine-tune from it (drop --bert_config_file)
```

`python tools/chinese_results.py` runs every arm of the tables below (each step once; the
records in `docs/chinese_runs.jsonl` are kept) and rewrites this page; `--budget_minutes N`
bounds a session, `--list` prints the commands.
""".splitlines() + [""]
FILL_MASK = ["这家酒店的服务很[MASK]。", "房间很干净，位置也[MASK]方便。", "我在北[MASK]工作。"]
# What the first version of this page (60 masked-LM steps) measured, and what found its cause:
# history, written once, so not computed from the records.
HISTORY = """## Why an earlier version had the pre-trained arms at chance

The first version of this page pre-trained for 60 masked-LM steps (lr 2e-3, 6 warm-up steps,
dupe_factor 1; chosen when a CPU shared ten ways made a step take 7 s). Fine-tuned from either
masked LM, ChnSentiCorp stayed at 49.8 (one class for every review) with a flat training loss of
0.69, while the same fine-tuning from random weights reached 80.2. Measured since, on one thread:

- Not a loading bug: `BertForSequenceClassification.from_pretrained` on the pre-trained folder
  loads all 39 encoder and pooler tensors, initialises only `classifier.*` and ignores the 7 `cls.*`
  (the MLM and NSP heads); vocab.txt is byte-identical to bert-base-chinese's, and every field of
  `examples/bert_chinese_tiny_config.json` comes back unchanged in the saved config.json. With
  `--next_sentence_weight=0` the pooler gets no gradient and keeps its initialisation, exactly as a
  model from scratch has it, so it cannot explain a gap to the scratch arm.
- Not the fine-tuning learning rate alone: from the 60-step model, 300 steps of 32 at lr 2e-3 and at
  2e-4 (with warm-up) both stayed at loss 0.69 and 49.8 / 50.2 test accuracy.
- The masked LM had not left its unigram plateau: its fill-mask gave the same top 5 (， 的 不 。 了)
  with the same probabilities for every context, and on 64 dev reviews the last layer's vectors
  hardly depended on the input: their standard deviation across tokens was 0.03 (0.79 for a model at
  random initialisation), the [CLS] vector's across reviews 0.0005 (0.005 at random). A classifier on
  a representation that is the same for every review has nothing to learn from, and its gradient
  into the encoder is near zero, so fine-tuning cannot start.
- After 1,500 masked-LM steps at lr 1e-3 (warm-up 150) the same measures were 0.73 and 0.24, and
  300 fine-tuning steps at lr 1e-3 reached 77.6 test accuracy (2e-4: 76.3; from scratch with the
  same 300 steps: 85.1 and 82.5).

Hence the budgets above: {PRETRAIN['steps']:,} masked-LM steps at lr 1e-3, fine-tuning at lr 1e-3
for 3 epochs.
""".replace("{PRETRAIN['steps']:,}", f"{PRETRAIN['steps']:,}").splitlines() + [""]


@dataclass
class Step:
    key: str  # e.g. csc-tapt-s2, pretrain-wwm, tfidf
    argvs: list[list[str]]  # bertkit commands run in turn (pre-training: data, then the model)
    seed: int = 1
    needs: list[str] = field(default_factory=list)  # keys of steps whose output this one reads

    @property
    def output(self) -> Path:
        return OUTPUTS / self.key


def vocab(data: Path) -> Path:
    return data / "vocab" / "bert-base-chinese" / "vocab.txt"


def corpus_path() -> Path:
    return OUTPUTS / "corpus" / "tapt_corpus.txt"


def pretrain_step(data: Path, masking: str) -> Step:
    key = f"pretrain-{masking}"
    shards = OUTPUTS / key / "shards"
    wwm = ["--do_whole_word_mask", "--word_segmenter=jieba"] if masking == "wwm" else []
    return Step(key, [
        ["create_pretraining_data", f"--input_file={corpus_path()}", f"--output_dir={shards}",
         f"--vocab_file={vocab(data)}", "--one_document_per_line", "--split_sentences", *wwm,
         f"--max_seq_length={PRETRAIN['max_seq_length']}",
         f"--max_predictions_per_seq={PRETRAIN['max_predictions_per_seq']}",
         f"--dupe_factor={PRETRAIN['dupe_factor']}", "--random_seed=12345"],
        ["run_pretraining", f"--input_file={shards}", f"--output_dir={OUTPUTS / key / 'model'}", "--do_train",
         "--do_eval", f"--bert_config_file={CONFIG}", f"--vocab_file={vocab(data)}",
         f"--max_seq_length={PRETRAIN['max_seq_length']}",
         f"--max_predictions_per_seq={PRETRAIN['max_predictions_per_seq']}",
         f"--train_batch_size={PRETRAIN['batch_size']}", f"--num_train_steps={PRETRAIN['steps']}",
         f"--num_warmup_steps={PRETRAIN['warmup_steps']}", f"--learning_rate={PRETRAIN['learning_rate']:g}",
         "--next_sentence_weight=0", "--max_eval_steps=10", "--seed=1", "--save_checkpoints_steps=100000",
         "--no_progress"]])


def model_flags(arm: str, data: Path) -> list[str]:
    pretrained = ARMS[arm]
    if pretrained is None:
        return [f"--bert_config_file={CONFIG}", f"--vocab_file={vocab(data)}"]
    return [f"--init_checkpoint={OUTPUTS / pretrained / 'model'}"]


def csc_step(data: Path, arm: str, seed: int) -> Step:
    csc = data / "chinese" / "chnsenticorp"
    key = f"csc-{arm}-s{seed}"
    return Step(key, [[
        "run_classifier", f"--train_file={csc / 'train.tsv'}", f"--validation_file={csc / 'dev.tsv'}",
        f"--test_file={csc / 'test.tsv'}", "--text_column=text_a", "--label_column=label", "--do_train",
        "--do_predict", *model_flags(arm, data), f"--max_seq_length={CSC['max_seq_length']}",
        f"--train_batch_size={CSC['batch_size']}", "--eval_batch_size=64", "--predict_batch_size=64",
        f"--max_steps={CSC['steps']}", f"--learning_rate={CSC['learning_rate']:g}", f"--seed={seed}",
        "--save_checkpoints_steps=100000", "--no_progress", f"--output_dir={OUTPUTS / key}"]],
        seed, [ARMS[arm]] if ARMS[arm] else [])


def ner_step(data: Path, arm: str, seed: int) -> Step:
    ner = data / "chinese" / "ner"
    key = f"ner-{arm}-s{seed}"
    return Step(key, [[
        "run_ner", f"--train_file={ner / 'test.txt'}", f"--eval_file={ner / 'dev.txt'}", "--do_train", "--do_eval",
        *model_flags(arm, data), f"--max_seq_length={NER['max_seq_length']}",
        f"--train_batch_size={NER['batch_size']}", "--eval_batch_size=64", f"--max_steps={NER['steps']}",
        f"--learning_rate={NER['learning_rate']:g}", f"--seed={seed}", "--save_checkpoints_steps=100000",
        "--no_progress", f"--output_dir={OUTPUTS / key}"]],
        seed, [ARMS[arm]] if ARMS[arm] else [])


def planned(data: Path) -> list[Step]:
    """Every step, in the order they run: the baseline, seed 1 of every ChnSentiCorp arm (each
    pre-training just before the arm that first needs it), seed 1 of every NER arm, then seeds 2
    and 3, so that a bounded session completes one task's comparison before starting the next."""
    steps = [Step("tfidf", [])]
    for seed in SEEDS:
        for task in (csc_step, ner_step):
            for arm in ARMS:
                if seed == 1 and task is csc_step and ARMS[arm]:
                    steps.append(pretrain_step(data, ARMS[arm].removeprefix("pretrain-")))
                steps.append(task(data, arm, seed))
    return steps


# -- running ---------------------------------------------------------------------------------


def read_records() -> dict[str, dict]:
    if not RECORDS.is_file():
        return {}
    return {r["key"]: r for r in map(json.loads, RECORDS.read_text(encoding="utf-8").splitlines())}


def record(key: str, seed: int, metrics: dict, seconds: float, commands: list[str]) -> None:
    """One finished step, with the CPU it ran on and its thread count (the report states both)."""
    from bertkit.cpu import cpu_info

    with open(RECORDS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"key": key, "seed": seed, "metrics": metrics, "wall_seconds": round(seconds, 1),
                                 "cpu": cpu_info().model, "threads": os.environ.get("OMP_NUM_THREADS"),
                                 "commands": commands}, ensure_ascii=False) + "\n")


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    """ChnSentiCorp's `label<TAB>text_a` rows; a label written with spaces (test.tsv's `    0`) is stripped."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [row[1] for row in rows], [int(row[0].strip()) for row in rows]


def write_corpus(data: Path) -> None:
    """The task-adaptive corpus: one ChnSentiCorp training review per line, then one NER training
    sentence (its characters joined) per line; create_pretraining_data makes each line a document."""
    texts, _ = read_tsv(data / "chinese" / "chnsenticorp" / "train.tsv")
    sentences = [b for b in (data / "chinese" / "ner" / "test.txt").read_text(encoding="utf-8").split("\n\n")
                 if b.strip()]
    path = corpus_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(" ".join(text.split()) + "\n" for text in texts)
        handle.writelines("".join(line.split()[0] for line in block.splitlines() if line.strip()) + "\n"
                          for block in sentences)


def run_tfidf(data: Path) -> None:
    """Character 1-3-grams, TF-IDF, logistic regression; C chosen on dev. Deterministic (liblinear)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    csc = data / "chinese" / "chnsenticorp"
    (train, y_train), (dev, y_dev), (test, y_test) = (read_tsv(csc / f"{s}.tsv") for s in ("train", "dev", "test"))
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(train)
    x_dev, x_test = vectorizer.transform(dev), vectorizer.transform(test)
    by_c = {}
    for c in (1.0, 4.0, 16.0):
        model = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(x_train, y_train)
        by_c[c] = (model.score(x_dev, y_dev), model)
    best = max(by_c, key=lambda c: by_c[c][0])
    dev_accuracy, model = by_c[best]
    metrics = {"eval_accuracy": dev_accuracy, "test_accuracy": model.score(x_test, y_test), "C": best,
               "features": len(vectorizer.vocabulary_)}
    record("tfidf", 1, metrics, time.perf_counter() - start,
           ["tools/chinese_results.py: TfidfVectorizer(analyzer='char', ngram_range=(1, 3), sublinear_tf=True, "
            "min_df=2) + LogisticRegression(solver='liblinear', C in 1/4/16 chosen on dev)"])


def fill_mask(model_dir: Path) -> list[dict]:
    from bertkit.inference.pipeline import pipeline

    fill = pipeline(str(model_dir), task="fill-mask")
    return [{"text": text, "top": [(r["token_str"], round(r["score"], 3)) for r in fill(text, top_k=5)]}
            for text in FILL_MASK]


def run_step(step: Step, data: Path) -> None:
    if step.key == "tfidf":
        run_tfidf(data)
        return
    if step.key.startswith("pretrain-") and not corpus_path().is_file():
        write_corpus(data)
    seconds = 0.0
    for argv in step.argvs:
        took, _ = run_command(step.key, bertkit(argv))
        seconds += took
    commands = [shown("bertkit " + " ".join(argv), data) for argv in step.argvs]
    if step.key.startswith("pretrain-"):
        index = json.loads((step.output / "shards" / "index.json").read_text())
        results = read_eval_results(step.output / "model" / "eval_results.txt")
        metrics = {"masked_lm_accuracy": results.get("eval_masked_lm_accuracy"),
                   "masked_lm_loss": results.get("eval_masked_lm_loss"),
                   **{k: index[k] for k in ("num_documents", "num_sentences", "num_corpus_tokens",
                                            "num_instances")},
                   "fill_mask": fill_mask(step.output / "model")}
    elif step.key.startswith("csc-"):
        test = read_eval_results(step.output / "test_results.txt")
        metrics = {"test_accuracy": test["test_accuracy"], "test_macro_f1": test.get("test_macro_f1")}
    else:
        metrics = json.loads((step.output / "eval_results.json").read_text())
    record(step.key, step.seed, metrics, seconds, commands)


# -- the report ------------------------------------------------------------------------------


def by_seed(records: dict, task: str, arm: str, metric: str) -> dict[int, float]:
    found = {}
    for seed in SEEDS:
        rec = records.get(f"{task}-{arm}-s{seed}")
        if rec is not None and rec["metrics"].get(metric) is not None:
            found[seed] = rec["metrics"][metric]
    return found


def cells(values: dict[int, float]) -> str:
    return " | ".join(f"{100 * values[s]:.1f}" if s in values else "not run" for s in SEEDS)


def mean_cell(values: dict[int, float]) -> str:
    return mean_std(list(values.values())) if values else "not run"


def write_report(steps: list[Step], data: Path) -> None:
    records = read_records()
    tfidf = records.get("tfidf")
    bert_runs = [r for key, r in records.items() if key != "tfidf"]
    cpus = sorted({r["cpu"] for r in bert_runs if r.get("cpu")}) or ["AMD EPYC"]
    threads = sorted({str(r["threads"]) for r in bert_runs if r.get("threads")})
    minutes = sum(r["wall_seconds"] for r in records.values()) / 60
    lines = [
        "# Chinese end to end: ChnSentiCorp and Chinese NER", "",
        "Produced by `OMP_NUM_THREADS=1 python tools/chinese_results.py` (records in `docs/chinese_runs.jsonl`) on "
        f"{' / '.join(cpus)} (`lscpu`: 2 cores, AVX2, no AVX-512; a KVM guest), each run on "
        + ("one thread (OMP_NUM_THREADS)" if threads == ["1"] else
           f"{' / '.join(threads)} threads (OMP_NUM_THREADS)" if threads else "one thread")
        + f" while the other core served other jobs; the runs recorded took {minutes:.0f} minutes in all. On that one "
        f"thread a step of 32 × 64 tokens takes {STEP_SECONDS['fine-tuning']:.2f} s to fine-tune and "
        f"{STEP_SECONDS['masked LM']:.2f} s of masked-LM pre-training, and the budgets below were chosen from "
        "those times to fit the whole table in about 100 minutes. There is no pretrained Chinese checkpoint here: "
        "every model starts from a random initialisation of `examples/bert_chinese_tiny_config.json` (2 layers, "
        "hidden size 128, 2 heads, 128 positions, the 21,128-entry `bert-base-chinese` vocabulary). Read the numbers "
        f"as what a tiny model learns in {PRETRAIN['steps'] * STEP_SECONDS['masked LM'] / 60:.0f} minutes of "
        f"pre-training and {CSC['steps'] * STEP_SECONDS['fine-tuning'] / 60:.1f} minutes of fine-tuning on one CPU "
        "thread, not as what BERT can do on these tasks.", "", *GUIDE,
        "## ChnSentiCorp (binary sentiment, accuracy ×100)", "",
        f"Trained on train.tsv (9,600 reviews) for {CSC['steps']} steps of {CSC['batch_size']} "
        f"({CSC['steps'] * CSC['batch_size']:,} reviews, {CSC['steps'] * CSC['batch_size'] / 9600:.2f} epochs), "
        f"max_seq_length {CSC['max_seq_length']} (59% of the training reviews are longer and are cut to their first 62 characters), lr "
        f"{CSC['learning_rate']:g}, linear decay after 10% warm-up; scored on test.tsv (1,200 reviews; the BERT "
        "rows are not evaluated on dev.tsv to save the CPU, and nothing is tuned on test). test.tsv's row 418 has "
        "the label `    0`: run_classifier strips it and the baseline reads it as 0.", "",
        "| model | dev | test | " + " | ".join(f"test, seed {s}" for s in SEEDS) + " |",
        "|---|---:|---:|" + "---:|" * len(SEEDS)]
    if tfidf:
        m = tfidf["metrics"]
        lines.append(f"| TF-IDF character 1-3-grams + logistic regression (C={m['C']:g}, chosen on dev; "
                     f"deterministic) | {100 * m['eval_accuracy']:.1f} | {100 * m['test_accuracy']:.1f} | "
                     + " | ".join(["same"] * len(SEEDS)) + " |")
    else:
        lines.append("| TF-IDF character 1-3-grams + logistic regression | not run | not run | "
                     + " | ".join(["not run"] * len(SEEDS)) + " |")
    for arm in ARMS:
        test = by_seed(records, "csc", arm, "test_accuracy")
        lines.append(f"| BERT-Tiny shape, {ARM_NAMES[arm]} | – | {mean_cell(test)} | {cells(test)} |")
    one_class = [ARM_NAMES[arm] for arm in ARMS
                 if any(v < 0.4 for v in by_seed(records, "csc", arm, "test_macro_f1").values())]
    notes = ["", f"Rows at about 50 (macro F1 below 0.4: {'; '.join(one_class)}) predict one class for every "
             f"review: in {CSC['steps']} steps their training loss did not leave chance (the curves: "
             "`outputs/chinese/<run>/training_curves.png`). See \"Why an earlier version had the pre-trained arms at "
             "chance\" below for the one cause of this that was measured here."] if one_class else []
    lines += [
        "| *published: bert-base-chinese (pre-trained on Chinese Wikipedia, 110M parameters)* | – | *about 94-95* "
        "| | | |",
        "| *published: ERNIE 1.0* | – | *about 95* | | | |",
        "| *published: character CNN* | – | *about 89-90* | | | |", *notes, "",
        "Why these are below the published figures: bert-base-chinese starts from a model pre-trained on hundreds of "
        "millions of characters of Chinese Wikipedia for days on TPUs and has 110M parameters (12 layers, hidden "
        "size 768); it is fine-tuned for epochs at 128-512 tokens. Here a 2-layer model of about 3M parameters (2.7M "
        "of them the embedding table) starts from random weights, and its \"pre-training\" is "
        f"{PRETRAIN['steps']:,} steps of {PRETRAIN['batch_size']} sequences of {PRETRAIN['max_seq_length']} tokens "
        f"(about {PRETRAIN['steps'] * PRETRAIN['batch_size'] * PRETRAIN['max_seq_length'] / 1e6:.0f}M tokens seen, "
        f"{PRETRAIN['steps'] * STEP_SECONDS['masked LM'] / 60:.0f} minutes of one CPU thread) on the tasks' own 1.3M "
        "characters; fine-tuning sees reviews cut to 62 characters for 3 epochs. So three things separate these "
        "rows from the published ones: no pretrained checkpoint (the largest), a model with about 35 times fewer parameters, and a "
        "CPU budget of minutes where the published models had days of TPUs. The TF-IDF baseline is the honest bar "
        "a practitioner sets first" + (_against_tfidf(records, tfidf) if tfidf else "."), ""]

    lines += ["## Chinese NER (MSRA-style LOC / ORG / PER, entity F1 ×100)", "",
              f"Trained on chinese/ner/test.txt (4,636 sentences, one character per line, IOB2) for "
              f"{NER['steps']} steps of {NER['batch_size']} ({NER['steps'] * NER['batch_size']:,} windows, "
              f"{NER['steps'] * NER['batch_size'] / NER_WINDOWS:.2f} epochs of the {NER_WINDOWS:,} windows the "
              f"sentences make), lr {NER['learning_rate']:g}, linear decay after 10% warm-up, evaluated on dev.txt "
              f"(2,318 sentences), max_seq_length {NER['max_seq_length']} (the 21% of sentences that are longer are split into "
              "overlapping windows, not truncated); seqeval's entity-level micro F1 (conlleval semantics). The repository this data "
              "comes from (BertWithPretrained) trains on its own training file, which is not available.", "",
              "| model | dev F1 | dev precision | dev recall | " + " | ".join(f"F1, seed {s}" for s in SEEDS) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(SEEDS)]
    for arm in ARMS:
        f1, p, r = (by_seed(records, "ner", arm, m) for m in ("f1", "precision", "recall"))
        lines.append(f"| BERT-Tiny shape, {ARM_NAMES[arm]} | {mean_cell(f1)} | {mean_cell(p)} | {mean_cell(r)} | "
                     f"{cells(f1)} |")
    if any(value == 0 for arm in ARMS for value in by_seed(records, "ner", arm, "f1").values()):
        lines += ["", f"F1 0.0 means the model tags every character O after {NER['steps']} steps (its token accuracy "
                  "is the share of O characters): from random weights, finding entity boundaries takes far more "
                  "training than this budget gives. BertWithPretrained's Chinese NER starts from bert-base-chinese."]
    if any(by_seed(records, "ner", arm, "f1") for arm in ARMS):
        lines += ["", "Every row is far below a pre-trained Chinese BERT on NER of this kind (published bert-base-chinese "
                  "figures on MSRA NER are in the 90s, trained on its 46k-sentence training set; BertWithPretrained "
                  "fine-tunes bert-base-chinese too): here the model starts from random weights or from "
                  f"{PRETRAIN['steps']:,} masked-LM steps, and learns from 4,636 sentences (what pre-training on "
                  "the tasks' texts adds is under \"Task-adaptive pre-training and whole-word masking\" below)."]
    per_type = next((records[f"ner-{arm}-s1"]["metrics"]["per_type"] for arm in ("tapt-wwm", "tapt", "scratch")
                     if f"ner-{arm}-s1" in records), None)
    if per_type:
        lines += ["", "Per entity type (seed 1 of the last arm in the table that ran): " + ", ".join(
            f"{t} F1 {100 * v['f1']:.1f} (support {v['support']})" for t, v in sorted(per_type.items())) + "."]

    lines += ["", "## Task-adaptive pre-training and whole-word masking", "",
              "Corpus: the ChnSentiCorp training reviews and the NER training sentences (one document each, split "
              "into sentences after 。！？), "
              f"masked LM only (`--next_sentence_weight=0`, as RoBERTa and the TAPT paper), {PRETRAIN['steps']:,} steps "
              f"of {PRETRAIN['batch_size']} at {PRETRAIN['max_seq_length']} tokens, lr "
              f"{PRETRAIN['learning_rate']:g} with {PRETRAIN['warmup_steps']} warm-up steps, "
              f"dupe_factor {PRETRAIN['dupe_factor']}. Masked-LM accuracy on its first 10 batches:", "",
              "| masking | documents | sentences | characters | instances | masked-LM accuracy | loss |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for masking, name in (("char", "characters (BERT's Chinese default)"), ("wwm", "whole words (jieba)")):
        rec = records.get(f"pretrain-{masking}")
        if rec is None:
            lines.append(f"| {name} | not run | | | | | |")
            continue
        m = rec["metrics"]
        lines.append(f"| {name} | {m['num_documents']:,} | {m['num_sentences']:,} | {m['num_corpus_tokens']:,} | "
                     f"{m['num_instances']:,} | {100 * m['masked_lm_accuracy']:.1f} | {m['masked_lm_loss']:.2f} |")
    lines += ["", "The two accuracies are measured on differently masked data (whole words, or single characters "
              "that a word's unmasked characters give away), so they do not rank the models; the fine-tuning rows "
              "above say whether whole-word masking helps.", ""]
    for arm, against, name in (("tapt", "scratch", "Task-adaptive pre-training (character masking) minus from scratch"),
                               ("tapt-wwm", "scratch", "Task-adaptive pre-training (whole-word masking) minus from scratch"),
                               ("tapt-wwm", "tapt", "Whole-word minus character masking")):
        verdict = compare(records, arm, against, name)
        if verdict:
            lines += [verdict, ""]
    wwm = wwm_verdict(records)
    if wwm:
        lines += [wwm, ""]
    fills = next((records[k]["metrics"]["fill_mask"] for k in ("pretrain-wwm", "pretrain-char") if k in records), None)
    if fills:
        which = "whole-word" if "pretrain-wwm" in records else "character"
        lines += [f"Fill-mask on the {which}-masking model (`bertkit predict --model DIR \"…[MASK]…\"`), top 5:", ""]
        lines += [f"- {f['text']} → " + ", ".join(f"{t} ({s:.2f})" for t, s in f["top"]) for f in fills]
        if len({tuple(map(tuple, f["top"])) for f in fills}) == 1:
            lines += ["", f"After {PRETRAIN['steps']} steps the model answers with the corpus's most frequent "
                      "characters whatever the context: unigram statistics, the first thing a masked LM learns."]
        lines.append("")

    lines += HISTORY
    missing = [s.key for s in steps if s.key not in records]
    if missing:
        lines += [f"Not run yet (the CPU budget): {', '.join(missing)}. `python tools/chinese_results.py` runs them "
                  "and rewrites this page.", ""]
    lines += ["<details><summary>commands</summary>", "", "```"]
    lines += [shown("bertkit " + " ".join(argv), data) for step in steps for argv in step.argvs]
    lines += ["```", "</details>", ""]
    REPORT.write_text("\n".join(lines), encoding="utf-8")


def _against_tfidf(records: dict, tfidf: dict) -> str:
    """The sentence after "The TF-IDF baseline is the honest bar a practitioner sets first", from the results."""
    bar = tfidf["metrics"]["test_accuracy"]
    means = {arm: statistics.mean(v.values()) for arm in ARMS if (v := by_seed(records, "csc", arm, "test_accuracy"))}
    if not means:
        return f": at {100 * bar:.1f} it is at the published bert-base-chinese figure already."
    best = max(means, key=means.get)
    where = "below" if means[best] < bar else "at or above"
    return (f": at {100 * bar:.1f} it is at the published bert-base-chinese figure already, and the best BERT row "
            f"here ({ARM_NAMES[best]}, {100 * means[best]:.1f}) is {abs(100 * (bar - means[best])):.1f} points {where} "
            "it.")


def wwm_verdict(records: dict) -> str | None:
    """Does whole-word masking help here? Its arm against the character-masking arm, seed by seed: a task
    counts where the paired gap is larger than its spread and has the same sign on every seed."""
    parts, helped, hurt, unclear = [], [], [], []
    for task, metric, what in (("csc", "test_accuracy", "ChnSentiCorp"), ("ner", "f1", "NER")):
        ours, theirs = by_seed(records, task, "tapt-wwm", metric), by_seed(records, task, "tapt", metric)
        both = sorted(set(ours) & set(theirs))
        if len(both) < 2:
            continue
        gaps = [ours[s] - theirs[s] for s in both]
        gap, spread = 100 * statistics.mean(gaps), 100 * statistics.stdev(gaps)
        wins = sum(g > 0 for g in gaps)
        clear = abs(gap) > spread and wins in (0, len(both))
        (helped if clear and gap > 0 else hurt if clear else unclear).append(what)
        parts.append(f"{what} {gap:+.1f} ± {spread:.1f} (whole-word ahead in {wins} of {len(both)} seeds"
                     + (", the gap larger than its spread over the seeds)" if clear else ")"))
    if not parts:
        return None
    if helped and hurt:
        answer = f"It depends on the task: it helps on {' and '.join(helped)} and hurts on {' and '.join(hurt)}"
    elif helped:
        answer = f"Yes, on {' and '.join(helped)}" + (f" (not measurably on {' and '.join(unclear)})" if unclear else "")
    elif hurt:
        answer = f"No: it hurts on {' and '.join(hurt)}" + (f" (no clear gap on {' and '.join(unclear)})"
                                                          if unclear else "")
    else:
        answer = "Not measurably"
    return (f"**Does whole-word masking help here?** {answer}. Whole-word minus character masking, each seed's "
            "two fine-tunings paired, mean ± std of the paired differences: " + "; ".join(parts) + ". Both "
            "pre-trainings had the same corpus, steps, learning rate and seed. The seeds vary the fine-tuning only: "
            "each masking was pre-trained once, so the spread leaves out how much a second pre-training run would "
            "move, and a gap of a point or two between two single pre-trainings is a measurement at this budget "
            f"({PRETRAIN['steps']:,} steps of a 2-layer model), not a general verdict on Chinese-BERT-wwm, which "
            "trains BERT-base on Chinese Wikipedia for hundreds of thousands of large-batch steps.")


def compare(records: dict, arm: str, against: str, name: str) -> str | None:
    """`arm` minus `against`, per task, over the seeds both ran, judged against the seeds' spread."""
    parts = []
    for task, metric, what in (("csc", "test_accuracy", "ChnSentiCorp test accuracy"), ("ner", "f1", "NER dev F1")):
        ours, theirs = by_seed(records, task, arm, metric), by_seed(records, task, against, metric)
        both = sorted(set(ours) & set(theirs))
        if not both:
            continue
        gap = 100 * statistics.mean(ours[s] - theirs[s] for s in both)
        spread = 100 * max(statistics.stdev(v.values()) if len(v) > 1 else 0.0 for v in (ours, theirs))
        within = "within the seeds' spread" if len(both) > 1 and abs(gap) <= spread else (
            "one seed: no spread to compare with" if len(both) == 1 else "outside the seeds' spread")
        parts.append(f"{what} {gap:+.1f} ({within}, seed{'s' * (len(both) > 1)} {', '.join(map(str, both))})")
    return f"{name}: " + "; ".join(parts) + "." if parts else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, action="append", choices=SEEDS, help="run only this seed's missing runs")
    parser.add_argument("--only", choices=("csc", "ner"), help="run only this task's fine-tunings (a second "
                        "invocation beside one running the other task; pre-trained models it needs are waited for)")
    parser.add_argument("--budget_minutes", type=float, default=None,
                        help="start no new step after this many minutes (the report marks the rest not run)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    data = require_data(minilm=False)
    if data is None:
        return 2
    steps = planned(data)
    selected = [s for s in steps if (not args.seed or s.seed in args.seed or s.key in ("tfidf",)
                                     or s.key.startswith("pretrain-"))
                and (not args.only or s.key.startswith(args.only + "-"))]
    if args.list:
        print("\n".join(f"{s.key}: " + " && ".join("bertkit " + " ".join(a) for a in s.argvs) for s in selected))
        return 0
    start = time.perf_counter()
    if not args.report_only:
        for step in selected:
            if step.key in read_records():
                continue
            if args.budget_minutes is not None and time.perf_counter() - start > 60 * args.budget_minutes:
                print(f"budget of {args.budget_minutes:g} minutes spent: {step.key} and later steps not started")
                break
            missing = [need for need in step.needs if need not in read_records()]
            while missing and args.only and any(s.key in missing for s in steps if s not in selected):
                # Another invocation makes it (the pre-training runs with the other task's steps).
                if args.budget_minutes is not None and time.perf_counter() - start > 60 * args.budget_minutes:
                    break
                time.sleep(30)
                missing = [need for need in step.needs if need not in read_records()]
            if missing:
                print(f"{step.key}: skipped, it needs {', '.join(missing)}")
                continue
            print(f"{step.key} ...", flush=True)
            run_step(step, data)
            write_report(steps, data)
    write_report(steps, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
