"""A pipeline with the interface bertkit.tasks.pipeline.Pipeline declares and a fake model, so that the server's
batching, backpressure, drain and error handling are tested apart from any real model.

Its "embedding" of a text identifies it: [real tokens, sum of ids, first id, last id] (before [SEP]),
so a test can check that every caller got its own answer. A feature holding the word "fire" makes
the model raise (the crafted input); `gate` (a threading.Event) holds the model until set; every
batch is recorded.
"""

from __future__ import annotations

import threading
import time

from helpers import TINY_VOCAB

from bertkit.config import BertConfig
from bertkit.errors import ConfigError
from bertkit.tasks import registry
from bertkit.tasks.pipeline import Feature, Pipeline
from bertkit.tokenization import FullTokenizer


class FakePipeline(Pipeline):
    """Pipeline's declared interface (split_options, warmup_input, embeddings, ...) over a fake model;
    its own __init__, since there is no model to load."""

    def __init__(self, task: str = "feature-extraction", max_seq_length: int = 16, delay: float = 0.0,
                 gate: threading.Event | None = None):
        self.task = task
        self.embeddings = task == "feature-extraction"
        self._real = registry.get(task).pipeline  # the parameters its task's pipeline declares
        self.parameters = self._real.parameters
        self.model = None  # no torch model (so no `precision` for /info)
        self.tokenizer = FullTokenizer(TINY_VOCAB)
        labels = {0: "short", 1: "long"} if task == "text-classification" else None
        self.config = BertConfig(vocab_size=len(self.tokenizer), hidden_size=4, num_attention_heads=1, id2label=labels)
        self.max_seq_length = max_seq_length
        self.delay = delay
        self.gate = gate
        self.batches: list[list[list[int]]] = []  # the input_ids of every batch run
        self.entered = threading.Event()  # set when a batch reaches forward (before the gate)
        self._lock = threading.Lock()
        self._fire = self.tokenizer.vocab["fire"]
        # call options: to pre/postprocess, as the pipeline's
        self.options = {"top_k": 1} if task == "text-classification" else {"normalize": False}
        self.preprocessed = 0  # items preprocessed: what a request cost before it was refused

    def check_parameters(self, parameters, inputs):
        self._real.check_parameters(self, parameters, inputs)

    def info(self):
        return {"task": self.task, "labels": self.labels, "max_seq_length": self.max_seq_length}

    _vocabulary_warned = False  # Pipeline's check_vocabulary and unknown_tokens need only the tokenizer

    def parse(self, texts=None, **kwargs):
        if kwargs:
            raise ConfigError(f"the fake takes texts, not {', '.join(sorted(kwargs))}")
        items = texts if isinstance(texts, list) else [texts]
        if not all(isinstance(text, str) for text in items):
            raise ConfigError("expected a text or a list of texts")
        return not isinstance(texts, list), items

    def shape_output(self, single, answers):
        return answers[0] if single else answers

    def preprocess(self, item, **options):
        self.preprocessed += 1
        ids = self.tokenizer.text_to_ids(item)
        truncated = len(ids) > self.max_seq_length - 2
        ids = [self.tokenizer.cls_token_id, *ids[:self.max_seq_length - 2], self.tokenizer.sep_token_id]
        return [Feature(ids, [0] * len(ids), truncated=truncated)]

    def num_tokens(self, feature):
        return len(feature.input_ids)

    def forward(self, features):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        with self._lock:
            self.batches.append([f.input_ids for f in features])
        if self.delay:
            time.sleep(self.delay)
        if any(self._fire in f.input_ids for f in features):
            raise ValueError("the fake model cannot take 'fire'")
        return [{"vector": [float(len(ids)), float(sum(ids)), float(ids[1]), float(ids[-2])]}
                for ids in (f.input_ids for f in features)]

    def postprocess(self, item, features, outputs, normalize=False, top_k=1):
        (output,) = outputs
        if self.task == "text-classification":
            long = output["vector"][0] > 5
            return {"label": self.labels[long], "score": 1.0}
        vector = output["vector"]
        if normalize:
            norm = sum(v * v for v in vector) ** 0.5
            vector = [v / norm for v in vector]
        return vector

    def expected(self, text: str) -> list[float]:
        """The vector the fake model gives `text` (what a test compares answers with)."""
        ids = self.preprocess(text)[0].input_ids
        return [float(len(ids)), float(sum(ids)), float(ids[1]), float(ids[-2])]


class FakeCrossEncoder(FakePipeline):
    """A text-classification model with one score per pair (what /rerank runs): the score of a pair
    is the number of word pieces the two texts share, minus 0.5, as a logit."""

    cross_encoder = True

    def __init__(self, **kwargs):
        super().__init__("text-classification", **kwargs)
        self.config = BertConfig(vocab_size=len(self.tokenizer), hidden_size=4, num_attention_heads=1, num_labels=1)
        self.options = {"top_k": 1}

    def parse(self, texts=None, **kwargs):
        if isinstance(texts, str) and not kwargs:  # the server's warm-up
            return True, [(texts, "")]
        if kwargs or not isinstance(texts, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in texts):
            raise ConfigError("the fake cross-encoder takes a list of [a, b] pairs")
        return False, [tuple(pair) for pair in texts]

    def preprocess(self, item, **options):
        self.preprocessed += 1
        a, b = (self.tokenizer.text_to_ids(text) for text in item)
        ids = [self.tokenizer.cls_token_id, *a, self.tokenizer.sep_token_id, *b, self.tokenizer.sep_token_id]
        return [Feature(ids[:self.max_seq_length], [0] * min(len(ids), self.max_seq_length),
                        truncated=len(ids) > self.max_seq_length, meta=self.score(*item))]

    def score(self, a: str, b: str) -> float:
        return len(set(self.tokenizer.text_to_ids(a)) & set(self.tokenizer.text_to_ids(b))) - 0.5

    def postprocess(self, item, features, outputs, top_k=1, **options):
        return {"score": features[0].meta}
