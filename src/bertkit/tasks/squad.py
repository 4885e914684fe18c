"""run_squad: extractive question answering (SQuAD v1.1 / v2.0) on the one Trainer.

Google's run_squad.py, step for step: the JSON files are read into SquadExamples, every example is
cut into doc-stride windows (data/squad.py), BertForQuestionAnswering is trained on the windows'
start/end positions, and prediction collects the start and end logits of every window and decodes
them into one answer per question, written as predictions.json and nbest_predictions.json (and,
for SQuAD 2.0, null_odds.json).

Beyond Google's script:

* when the prediction file has gold answers, the official v1.1 metric is computed on the
  predictions and written as eval_results.txt (`exact_match`, `f1`, `global_step`);
* `split_articles=N` trains on the first N articles of one file and predicts on the rest, for a
  held-out evaluation when the only annotated SQuAD file at hand is dev-v1.1.json (38/10 of its
  48 articles); the held-out articles are written as eval_articles.json, so that the official
  evaluate-v1.1.py can score predictions.json against them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bertkit.data.batching import FeatureDataset
from bertkit.data.squad import (RawResult, SquadExample, collect_raw_results, convert_examples_to_features,
                                decode_predictions, is_whitespace, load_squad_dataset, read_squad_examples,
                                split_articles, split_context, squad_evaluate, write_predictions,
                                write_squad_dataset)
from bertkit.errors import ConfigError
from bertkit.heads import BertForQuestionAnswering
from bertkit.training.logging import write_eval_results
from bertkit.tasks.base import Split, Task, option
from bertkit.tasks.pipeline import Feature, Pipeline, check_text, parameter, question_records

logger = logging.getLogger("bertkit")

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
EVAL_RESULTS_FILE = "eval_results.txt"
EVAL_ARTICLES_FILE = "eval_articles.json"
GOOGLE, OURS = "Google's SQuAD flags", "bertkit's SQuAD flags"  # run_squad's --help sections


@dataclass
class SquadTask(Task):
    """What run_squad needs beyond the model and the training arguments (Google's flag names)."""

    train_file: str | None = option(None, "SQuAD json for training, e.g. train-v1.1.json", group=GOOGLE)
    predict_file: str | None = option(None, "SQuAD json for predictions, e.g. dev-v1.1.json", group=GOOGLE)
    do_train: bool = False
    do_predict: bool = False
    max_seq_length: int = 384
    doc_stride: int = option(128, "when splitting a long document into windows, how far apart they start (pieces)",
                             group=GOOGLE, minimum=1)
    max_query_length: int = option(64, "questions are cut to this many pieces", group=GOOGLE, minimum=1)
    n_best_size: int = option(20, "n-best predictions per question in nbest_predictions.json", group=GOOGLE,
                              minimum=1)
    max_answer_length: int = option(30, "the longest answer, in pieces", group=GOOGLE, minimum=1)
    version_2_with_negative: bool = option(False, "SQuAD 2.0: questions may have no answer", group=GOOGLE)
    null_score_diff_threshold: float = option(0.0, "SQuAD 2.0: predict no answer when null score - best span score "
                                                   "exceeds this", group=GOOGLE)
    split_articles: int | None = option(None, "train on the first N articles of --train_file and predict on the rest "
                                              "(e.g. 38 for dev-v1.1.json's 48 articles)", group=OURS, minimum=1,
                                        metavar="N")
    max_train_examples: int | None = option(None, "train on the first N questions only", group=OURS, minimum=1)
    max_eval_examples: int | None = None  # predict the first N questions only

    model_class = BertForQuestionAnswering

    def __post_init__(self):
        self._data: SquadData | None = None  # the files, read once for both splits
        super().__post_init__()

    @property
    def name(self) -> str:
        return "squad_v2" if self.version_2_with_negative else "squad"

    def metadata(self) -> dict:
        return {"doc_stride": self.doc_stride, "max_query_length": self.max_query_length}

    def has_labels(self, split: str) -> bool:
        return False  # the prediction windows have no positions: answers are scored after decoding

    def data(self) -> "SquadData":
        if self._data is None:
            self._data = load_data(self)
        return self._data

    def dataset(self, split: str, tokenizer, args) -> Split:
        data = self.data()
        convert = dict(tokenizer=tokenizer, max_seq_length=self.max_seq_length, doc_stride=self.doc_stride,
                       max_query_length=self.max_query_length, pad_to_max_length=args.pad_to_max_length,
                       progress=args.progress)
        if split == "train":
            features = convert_examples_to_features(data.train_examples, is_training=True, **convert)
            logger.info("%d questions in %d windows", len(data.train_examples), len(features))
            return Split(split, FeatureDataset(features), data.train_examples, features)
        features = convert_examples_to_features(data.eval_examples, is_training=False, **convert)
        return Split(split, FeatureDataset(features), data.eval_examples, features,
                     extra={"do_lower_case": tokenizer.do_lower_case})

    def eval_step(self, output, batch):
        return output.start_logits, output.end_logits

    def write_predictions(self, output_dir: Path, data: Split, predictions, results: dict) -> dict:
        start_logits, end_logits = predictions
        return write_outputs(output_dir, self, self.data(), data.features,
                             collect_raw_results(data.features, start_logits, end_logits), data.extra["do_lower_case"],
                             results.get("global_step", 0))

    def validate(self) -> None:
        """Flag combinations Google's script checks (validate_flags_or_throw), plus split_articles'."""
        if not (self.do_train or self.do_predict):
            raise ConfigError("at least one of --do_train or --do_predict must be true")
        if self.split_articles is not None:
            if not self.train_file:
                raise ConfigError("--split_articles=N needs --train_file: the one file whose first N articles "
                                  "are trained on and whose other articles are predicted")
            if self.predict_file and Path(self.predict_file).resolve() != Path(self.train_file).resolve():
                raise ConfigError("--split_articles predicts on the rest of --train_file; leave --predict_file out "
                                  f"(got --predict_file={self.predict_file})")
        else:
            if self.do_train and not self.train_file:
                raise ConfigError("--do_train needs --train_file")
            if self.do_predict and not self.predict_file:
                raise ConfigError("--do_predict needs --predict_file (or --split_articles=N with --train_file)")
        for name in ("doc_stride", "max_query_length", "n_best_size", "max_answer_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_seq_length < self.max_query_length + 4:
            raise ConfigError(f"--max_seq_length={self.max_seq_length} leaves no room for the document after a "
                              f"{self.max_query_length}-piece question; raise it or lower --max_query_length")


@dataclass
class SquadData:
    train_examples: list[SquadExample]
    eval_examples: list[SquadExample]
    eval_dataset: dict | None  # the gold answers to score against; None when the file has none


def _has_answers(dataset: Mapping) -> bool:
    """Whether every question of a SQuAD-format dataset carries its gold answers (test files do not)."""
    return all(isinstance(qa, dict) and "answers" in qa
               for article in dataset["data"] if isinstance(article, dict)
               for paragraph in article.get("paragraphs", []) if isinstance(paragraph, dict)
               for qa in paragraph.get("qas", []))


def load_data(task: SquadTask) -> SquadData:
    """The training and prediction examples the task asks for, and the gold answers if there are any."""
    v2 = task.version_2_with_negative
    if task.split_articles is not None:
        split = split_articles(task.train_file, task.split_articles, version_2_with_negative=v2)
        logger.info("%s: training on the first %d articles (%d questions), predicting on the other %d (%d questions)",
                    task.train_file, task.split_articles, len(split.train_examples), len(split.eval_dataset["data"]),
                    len(split.eval_examples))
        train, evaluation, gold = split.train_examples, split.eval_examples, split.eval_dataset
        if not task.do_train:
            train = []
        if not task.do_predict:
            evaluation, gold = [], None
    else:
        train = read_squad_examples(task.train_file, is_training=True, version_2_with_negative=v2) if task.do_train else []
        evaluation, gold = [], None
        if task.do_predict:
            evaluation = read_squad_examples(task.predict_file, is_training=False, version_2_with_negative=v2)
            dataset = load_squad_dataset(task.predict_file)
            gold = dataset if _has_answers(dataset) else None
    if task.max_train_examples:
        train = train[: task.max_train_examples]
    if task.max_eval_examples:
        evaluation = evaluation[: task.max_eval_examples]
        if gold is not None:
            gold = _only_questions(gold, {e.qas_id for e in evaluation})
    return SquadData(train, evaluation, gold)


def _only_questions(dataset: dict, ids: set[str]) -> dict:
    """The SQuAD-format dataset cut to the questions in `ids`, so that the scores cover them alone."""
    articles = []
    for article in dataset["data"]:
        paragraphs = [{**p, "qas": [qa for qa in p["qas"] if qa["id"] in ids]} for p in article["paragraphs"]]
        paragraphs = [p for p in paragraphs if p["qas"]]
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {**dataset, "data": articles}


def write_outputs(output_dir: Path, task: SquadTask, data: SquadData, features, raw_results, do_lower_case: bool,
                  global_step: int) -> dict:
    """predictions.json, nbest_predictions.json (null_odds.json) and, with gold answers, eval_results.txt."""
    predictions = write_predictions(
        data.eval_examples, features, raw_results, n_best_size=task.n_best_size,
        max_answer_length=task.max_answer_length, do_lower_case=do_lower_case,
        output_prediction_file=output_dir / PREDICTIONS_FILE, output_nbest_file=output_dir / NBEST_FILE,
        version_2_with_negative=task.version_2_with_negative,
        null_score_diff_threshold=task.null_score_diff_threshold,
        output_null_log_odds_file=output_dir / NULL_ODDS_FILE)
    if task.split_articles is not None and data.eval_dataset is not None:
        write_squad_dataset(data.eval_dataset, output_dir / EVAL_ARTICLES_FILE)
    if data.eval_dataset is None:
        logger.info("%s has no gold answers: wrote the predictions, no scores", task.predict_file)
        return {}
    scores = squad_evaluate(data.eval_dataset, predictions)
    write_eval_results(output_dir / EVAL_RESULTS_FILE,
                       {**scores, "num_questions": len(data.eval_examples), "global_step": global_step})
    logger.info("exact_match = %.2f | f1 = %.2f on %d questions", scores["exact_match"], scores["f1"],
                len(data.eval_examples))
    return scores


@dataclass
class QuestionAnsweringParameters:
    question: str | None = parameter(None, "the question, when inputs holds none")
    context: str | None = parameter(None, "the text to find the answer in")
    doc_stride: int = parameter(128, "default: the checkpoint's", ge=1)
    max_query_length: int = parameter(64, "default: the checkpoint's", ge=1)
    max_answer_length: int = parameter(30, ge=1)
    n_best_size: int = parameter(20, ge=1, le=100)
    top_k: int | None = parameter(1, "answers per question; null: the n best", ge=1, le=100)


class QuestionAnsweringPipeline(Pipeline):
    """p(question=..., context=...) -> {"answer", "start", "end", "score"} with context[start:end] == answer.

    The context is cut into run_squad's doc-stride windows and decoded as run_squad decodes its
    predictions (the n-best spans over all windows, max-context rule, max_answer_length).
    """

    task = "question-answering"
    input_fields = ("question", "context")
    parameters = QuestionAnsweringParameters
    warmup_input = {"question": "What is warmed up?", "context": "The model is warmed up."}

    def default_options(self) -> dict:
        # The windows and question length of training (run_squad), as the checkpoint recorded them.
        saved = self.metadata
        return {"doc_stride": saved.doc_stride or SquadTask.doc_stride,
                "max_query_length": saved.max_query_length or SquadTask.max_query_length,
                "max_answer_length": SquadTask.max_answer_length, "n_best_size": SquadTask.n_best_size, "top_k": 1}

    def parse(self, question=None, context=None, **kwargs) -> tuple[bool, list]:
        single, records = question_records(self.task, "context", question, context, kwargs)
        items = []
        for i, record in enumerate(records):
            items.append((check_text(record["question"], f"input {i}: question"),
                          check_text(record["context"], f"input {i}: context")))
        return single, items

    def preprocess(self, item, doc_stride=128, max_query_length=64, **options) -> list[Feature]:
        question, context = item
        doc_tokens, _ = split_context(context)
        example = SquadExample("0", question, doc_tokens)
        if self.max_seq_length < max_query_length + 4:
            max_query_length = self.max_seq_length - 4
        windows = convert_examples_to_features(
            [example], self.tokenizer, self.max_seq_length, doc_stride, max_query_length, is_training=False,
            progress=False, log=False)
        return [Feature(w.input_ids, w.token_type_ids, meta=(example, w)) for w in windows]

    def _outputs(self, batch, features) -> list:
        output = self.model(**batch)
        start, end = output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy()
        return [(s[:len(f.input_ids)], e[:len(f.input_ids)]) for s, e, f in zip(start, end, features)]

    def postprocess(self, item, features, outputs, max_answer_length=30, n_best_size=20, top_k=1, **options):
        question, context = item
        example = features[0].meta[0]
        windows = [f.meta[1] for f in features]
        results = [RawResult(w.unique_id, s, e) for w, (s, e) in zip(windows, outputs)]
        decoded = decode_predictions([example], windows, results, n_best_size, max_answer_length,
                                                self.tokenizer.do_lower_case)[0]
        word_starts = _word_starts(context)
        answers = []
        for entry, probability in zip(decoded.nbest, decoded.probabilities):
            if entry.doc_start is None:
                continue
            start = _context_position(example.doc_tokens, word_starts, entry.doc_start, entry.char_start)
            end = _context_position(example.doc_tokens, word_starts, entry.doc_start, entry.char_end - 1) + 1
            answers.append({"score": float(probability), "start": start, "end": end, "answer": context[start:end]})
            if top_k is not None and len(answers) >= top_k:
                break
        if not answers:
            answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        return answers[0] if top_k == 1 else answers


def _word_starts(context: str) -> list[int]:
    """The character where each of split_context's whitespace-separated words starts."""
    starts, previous_space = [], True
    for i, char in enumerate(context):
        space = is_whitespace(char)
        if not space and previous_space:
            starts.append(i)
        previous_space = space
    return starts


def _context_position(doc_tokens: list[str], word_starts: list[int], first_word: int, position: int) -> int:
    """A character position in " ".join(doc_tokens[first_word:...]) -> the position in the context."""
    word = first_word
    while position >= len(doc_tokens[word]) + 1:  # the word and the one space after it
        position -= len(doc_tokens[word]) + 1
        word += 1
    return word_starts[word] + min(position, len(doc_tokens[word]) - 1)
