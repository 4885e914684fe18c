"""run_ner: token classification (named-entity recognition) on CoNLL column files or JSONL records.

The same shape as run_classifier: read the data files (data/ner.py), build one feature per
window of every sentence, fine-tune BertForTokenClassification on the one Trainer, then evaluate
on the dev file (CoNLL-2003's eng.testa) and, with do_predict, on the test file (eng.testb).

Scores are entity-level precision, recall and F1 with seqeval's default (conlleval) semantics,
overall (micro average) and per entity type, plus token accuracy. The model predicts one tag per
word (at its first word piece, in the window where the word has the most context); those tags
are what is scored and written out. Output, beside the model and the Trainer's files:

    <prefix>_results.txt      key = value, as run_classifier's eval_results.txt (prefix eval / test)
    <prefix>_results.json     the same numbers, with a per-type block
    <prefix>_per_type.txt     a precision / recall / F1 / support table per entity type
    predictions_<split>.txt   CoNLL columns `word gold pred`, a blank line between sentences
                              (`word pred` for unlabelled text); split is dev or test
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bertkit.data.batching import FeatureDataset
from bertkit.data.ner import (NerExample, align_predictions, check_labels,
                              convert_examples_to_features, entity_type, get_labels, model_scheme, read_ner_file,
                              scheme_of_labels, FORMATS, MODEL_SCHEMES, entity_spans)
from bertkit.errors import ConfigError
from bertkit.heads import BertForTokenClassification
from bertkit.io_utils import atomic_write
from bertkit.tasks.base import Split, Task, option
from bertkit.tasks.pipeline import Feature, TextPipeline, parameter, softmax_rows
from bertkit.tokenization import FullTokenizer

logger = logging.getLogger("bertkit")

# CoNLL-2003's file names; the dev set is eng.testa, the test set eng.testb.
CONLL2003_FILES = {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}


@dataclass
class NerTask(Task):
    """CoNLL-style token classification: what run_ner needs beyond the model and the training arguments."""

    data_dir: str = option("", "folder of the data files (e.g. ../shared/data/conll2003); without it the file "
                               "flags are paths")
    train_file: str = option(CONLL2003_FILES["train"], "training file (in --data_dir)")
    eval_file: str = option(CONLL2003_FILES["dev"], "dev file for --do_eval", names=("--eval_file", "--validation_file"))
    test_file: str = option(CONLL2003_FILES["test"], "test file for --do_predict")
    file_format: str | None = option(None, "conll (columns) or jsonl; default by each file's extension "
                                           "(.jsonl/.json: jsonl)", choices=FORMATS)
    # The tag column (default the last) or JSONL key (default ner_tags); run_ner parses the flag.
    label_column: int | str | None = option(None, "the tag: a 0-based column of a CoNLL file, negative from the end "
                                                  "(default -1: the last), or the key of a JSONL record (default "
                                                  "ner_tags)")
    text_column: str | None = option(None, "the key of a JSONL record's words (default tokens)")
    tag_names: list[str] | None = option(None, "names of integer JSONL tags, comma-separated in class-id order (a "
                                               "data set's ClassLabel names)", names=("--label_list",),
                                         metavar="O,B-PER,...")
    label_scheme: str | None = None  # the scheme of the model's tags (IOB2 or BIOES); from the training file
    source_label_scheme: str | None = None  # the training file's own scheme (IOB1, IOB2 or BIOES)
    word_unit: str | None = None  # "char" when every training word is one character (Chinese NER)
    test_has_labels: bool = option(True, "false: --test_file is unlabelled (words in the first column); it is only "
                                         "predicted")
    max_seq_length: int = 128
    doc_stride: int | None = option(None, "for sentences longer than max_seq_length: word pieces between the starts "
                                          "of consecutive windows (default: half a window)", minimum=1)
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    max_train_examples: int | None = option(None, "train on the first N sentences only", minimum=1)
    max_eval_examples: int | None = None  # the first N dev / test sentences
    label_list: list[str] | None = None  # the model's labels; run_ner takes them from its config

    model_class = BertForTokenClassification
    name = "ner"

    def validate(self) -> None:
        super().validate()
        if self.doc_stride is not None and self.doc_stride < 1:
            raise ConfigError(f"--doc_stride must be positive, got {self.doc_stride}")

    def path(self, split: str) -> Path:
        names = {"train": self.train_file, "dev": self.eval_file, "test": self.test_file}
        if split not in names:
            raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(names)}")
        return Path(self.data_dir) / names[split]

    def metadata(self) -> dict:
        # The pipeline decodes entities in label_scheme and, for a model of characters, cuts its
        # input into characters as the training file was.
        return {"label_scheme": self.label_scheme or "IOB2",
                **({"source_label_scheme": self.source_label_scheme} if self.source_label_scheme else {}),
                **({"word_unit": self.word_unit} if self.word_unit else {}),
                **({"doc_stride": self.doc_stride} if self.doc_stride else {})}

    def has_labels(self, split: str) -> bool:
        return split != "test" or self.test_has_labels

    def dataset(self, split: str, tokenizer, args) -> "NerSplit":
        return build_split(self, split, tokenizer, self.label_list)

    def eval_step(self, output, batch):
        return output.logits.argmax(dim=-1)  # the class id per token: ints, not a float per class

    def tags(self, data: "NerSplit", predictions: np.ndarray) -> list[list[str]]:
        """Per-token predicted ids -> one tag per word of every sentence of the split."""
        ids = align_predictions(data.features, predictions, data.examples)
        return [[self.label_list[i] for i in sentence] for sentence in ids]

    def metrics(self, data: "NerSplit", predictions: np.ndarray, labels=None) -> dict[str, float]:
        gold = [e.labels for e in data.examples]
        return ner_metrics(gold, self.tags(data, predictions), entity_types_of(self.label_list))

    def write_predictions(self, output_dir: Path, data: "NerSplit", predictions: np.ndarray, results: dict) -> dict:
        split = data.name
        write_conll_predictions(output_dir / f"predictions_{split}.txt", data.examples, self.tags(data, predictions))
        if data.has_labels:
            write_report(output_dir, "eval" if split == "dev" else split, results, entity_types_of(self.label_list),
                         data.path)
        logger.info("wrote the predictions for %d sentences to %s", len(data.examples),
                    output_dir / f"predictions_{split}.txt")
        return {}


class NerSplit(Split):
    """One data file, read and converted: sentences (`examples`), their window features and the Dataset."""

    @property
    def path(self) -> Path:
        return self.source

    @property
    def has_labels(self) -> bool:
        return bool(self.examples) and self.examples[0].labels is not None


def read_examples(task: NerTask, split: str) -> list[NerExample]:
    examples, _ = read_ner_file(task.path(split), labelled=task.has_labels(split), file_format=task.file_format,
                                label_column=task.label_column, text_column=task.text_column,
                                label_list=task.tag_names, scheme=task.label_scheme)
    limit = task.max_train_examples if split == "train" else task.max_eval_examples
    return examples[:limit] if limit else examples


def training_labels(task: NerTask) -> list[str]:
    """The label list from the (whole) training file: `O` first, then the others sorted. Sets the
    task's label scheme (and word unit) from that file too: they go with the labels into config.json."""
    examples, detected = read_ner_file(task.path("train"), file_format=task.file_format, label_column=task.label_column,
                                       text_column=task.text_column, label_list=task.tag_names)
    task.label_scheme, task.source_label_scheme = model_scheme(detected), detected
    if examples and all(len(word) == 1 for example in examples for word in example.words):
        task.word_unit = "char"
    logger.info("%s: %s tags, learnt as %s", task.path("train"), detected, task.label_scheme)
    return get_labels(examples)


def model_labels(config) -> list[str] | None:
    """The labels a token-classification checkpoint was trained with, if its config holds NER tags."""
    id2label = getattr(config, "id2label", None)
    if not id2label or "O" not in id2label.values() or sorted(id2label) != list(range(len(id2label))):
        return None
    return [id2label[i] for i in range(len(id2label))]


def build_split(task: NerTask, split: str, tokenizer: FullTokenizer, label_list: Sequence[str]) -> NerSplit:
    path = task.path(split)
    examples = read_examples(task, split)
    check_labels(examples, label_list, path)
    features = convert_examples_to_features(examples, label_list, task.max_seq_length, tokenizer, task.doc_stride)
    logger.info("%s: %d sentences, %d words, %d windows", path, len(examples),
                sum(len(e.words) for e in examples), len(features))
    return NerSplit(split, FeatureDataset(features), examples, features, path)


# -- metrics ---------------------------------------------------------------------------------


def ner_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                entity_types: Sequence[str] = ()) -> dict[str, float]:
    """seqeval's entity-level scores (default mode, as conlleval): `precision`, `recall`, `f1`
    (micro averages over entities), token `accuracy`, and `<TYPE>_precision / _recall / _f1 /
    _support` for every type found in either sequence or listed in `entity_types`."""
    from seqeval.metrics import accuracy_score, classification_report

    gold = [list(s) for s in gold]
    predicted = [list(s) for s in predicted]
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    overall = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    metrics = {"precision": float(overall["precision"]), "recall": float(overall["recall"]),
               "f1": float(overall["f1-score"]), "accuracy": float(accuracy_score(gold, predicted)) if gold else 0.0,
               "support": float(overall["support"])}
    types = sorted({k for k in report if not k.endswith(" avg")} | set(entity_types))
    for name in types:
        row = report.get(name, {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
        metrics.update({f"{name}_precision": float(row["precision"]), f"{name}_recall": float(row["recall"]),
                        f"{name}_f1": float(row["f1-score"]), f"{name}_support": float(row["support"])})
    return metrics


def entity_types_of(label_list: Sequence[str]) -> list[str]:
    return sorted({t for t in map(entity_type, label_list) if t})


# -- output ----------------------------------------------------------------------------------


def write_conll_predictions(path: str | Path, examples: Sequence[NerExample],
                            predicted: Sequence[Sequence[str]]) -> None:
    """CoNLL columns: `word gold pred` per line (`word pred` without gold), a blank line between sentences."""
    with atomic_write(path) as handle:
        for example, tags in zip(examples, predicted):
            gold = example.labels or [None] * len(example.words)
            for word, label, tag in zip(example.words, gold, tags):
                handle.write(f"{word} {label} {tag}\n" if label is not None else f"{word} {tag}\n")
            handle.write("\n")


def per_type_table(metrics: dict[str, float], entity_types: Sequence[str]) -> str:
    """A seqeval-style table: precision, recall, F1 and support per type, then the micro average."""
    lines = [f"{'':>10}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}", ""]

    def row(name: str, prefix: str) -> str:
        return (f"{name:>10}  {metrics[prefix + 'precision']:>9.4f}  {metrics[prefix + 'recall']:>9.4f}  "
                f"{metrics[prefix + 'f1']:>9.4f}  {int(metrics[prefix + 'support']):>7d}")

    lines += [row(name, f"{name}_") for name in entity_types]
    lines += ["", row("micro avg", ""), "", f"token accuracy {metrics['accuracy']:.4f}"]
    return "\n".join(lines) + "\n"


def summarize(plain: dict, entity_types: Sequence[str], path: Path, global_step: int | None = None) -> dict:
    """<prefix>_results.json's content from ner_metrics' keys: the micro averages, then per type."""
    types = [t for t in entity_types if f"{t}_f1" in plain] or sorted(
        k[: -len("_f1")] for k in plain if k.endswith("_f1") and k != "f1")
    return {"file": str(path), "global_step": global_step, "loss": plain.get("loss"),
            **{k: plain[k] for k in ("precision", "recall", "f1", "accuracy") if k in plain},
            "support": int(plain.get("support", 0)),
            "per_type": {t: {"precision": plain[f"{t}_precision"], "recall": plain[f"{t}_recall"],
                             "f1": plain[f"{t}_f1"], "support": int(plain[f"{t}_support"])} for t in types}}


def write_report(output_dir: Path, prefix: str, results: dict, entity_types: Sequence[str], path: Path) -> None:
    """<prefix>_results.json and <prefix>_per_type.txt from a `<prefix>_`-keyed result dict."""
    plain = {k[len(prefix) + 1:]: v for k, v in results.items() if k.startswith(prefix + "_")}
    summary = summarize(plain, entity_types, path, results.get("global_step"))
    types = list(summary["per_type"])
    with atomic_write(output_dir / f"{prefix}_results.json") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    with atomic_write(output_dir / f"{prefix}_per_type.txt") as handle:
        handle.write(f"{path}, step {results.get('global_step')}\n\n" + per_type_table(plain, types))


@dataclass
class TokenClassificationParameters:
    doc_stride: int | None = parameter(None, "token overlap of the windows of a text longer than the model", ge=1)
    aggregate: bool = parameter(True, "group word tags into entities (false: one answer per word)")


class TokenClassificationPipeline(TextPipeline):
    """p("Angela Merkel visited Paris.") -> entities with character offsets into the caller's string.

    Words are the tokenizer's basic tokens (words and punctuation marks), or single characters for
    a model trained on one character per line (config.json's `word_unit: char`, Chinese NER); each
    gets the tag predicted at its first word piece, in the window where it has the most context
    (run_ner's windows, so sentences longer than max_seq_length are covered). Tags are grouped
    into entities in the model's `label_scheme` (IOB2 or BIOES): B-X (and S-X) starts one, I-X
    (and E-X) continues an entity of type X and starts one after anything else, E-X and S-X end
    it (`data.ner.entity_spans`). An entity's score is the mean of its words' scores.
    """

    task = "token-classification"
    input_fields = ("text",)
    parameters = TokenClassificationParameters

    def default_options(self) -> dict:
        # The windows of training (run_ner --doc_stride), as the checkpoint recorded them.
        if self.label_scheme not in MODEL_SCHEMES:
            raise ConfigError(f"label_scheme {self.label_scheme!r} in the model's config.json: the "
                              f"token-classification pipeline reads {', '.join(MODEL_SCHEMES)} tags")
        return {"doc_stride": self.metadata.doc_stride, "aggregate": True}

    @property
    def label_scheme(self) -> str:
        return self.metadata.label_scheme or scheme_of_labels(self.labels or [])

    def info(self) -> dict:
        return {**super().info(), "label_scheme": self.label_scheme}

    def preprocess(self, text, doc_stride=None, **options) -> list[Feature]:
        words = self.tokenizer.words_with_offsets(text)
        if self.metadata.word_unit == "char":
            # The model saw one character per word in training: a number or a Latin word of the
            # basic tokenizer ("2006", "NBA") is cut into its characters the same way.
            words = [(text[i], i, i + 1) for _, start, end in words for i in range(start, end)]
        example = NerExample("predict", [w for w, _, _ in words])
        windows = convert_examples_to_features([example], None, self.max_seq_length, self.tokenizer,
                                                        doc_stride)
        return [Feature(f.input_ids, f.token_type_ids, meta=(f, words)) for f in windows]

    def _outputs(self, batch, features) -> list:
        logits = self.model(**batch).logits.float().cpu().numpy()
        return [row[:len(f.input_ids)] for row, f in zip(logits, features)]

    def postprocess(self, text, features, outputs, aggregate=True, **options):
        words = features[0].meta[1] if features else []
        labels = self.labels or [f"LABEL_{i}" for i in range(self.config.num_labels)]
        tags: list[tuple[str, float] | None] = [None] * len(words)
        for feature, logits in zip(features, outputs):
            probabilities = softmax_rows(logits)
            for position, word in enumerate(feature.meta[0].predict_words):
                if word >= 0:
                    best = int(probabilities[position].argmax())
                    tags[word] = (labels[best], float(probabilities[position, best]))
        if not aggregate:
            return [{"entity": tag, "score": score, "word": text[start:end], "start": start, "end": end}
                    for (tag, score), (_, start, end) in zip(tags, words) if tag != "O"]
        entities = []
        for kind, first, last in entity_spans([tag for tag, _ in tags]):
            start, end = words[first][1], words[last - 1][2]
            entities.append({"entity_group": kind, "score": float(np.mean([score for _, score in tags[first:last]])),
                             "word": text[start:end], "start": start, "end": end})
        return entities


def use_model_labels(task: NerTask, config) -> bool:
    """Evaluating a fine-tuned model: its labels, and the tag scheme and word unit it was trained
    with, from its config.json (so that a BIOES model reads an IOB2 dev file as BIOES). False when
    the config holds no NER labels (the training file's are used then)."""
    labels = model_labels(config)
    if labels is None:
        return False
    task.label_list = labels
    task.label_scheme = config.task_metadata.label_scheme or scheme_of_labels(labels)
    task.word_unit = task.word_unit or config.task_metadata.word_unit
    return True
