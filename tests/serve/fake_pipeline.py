"""A pipeline with bertkit.pipeline's low-level contract and a fake model, so that the server's
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
from bertkit.inference.pipeline import Feature, Pipeline
from bertkit.tokenization import FullTokenizer


class FakePipeline:
    def __init__(self, task: str = "feature-extraction", max_seq_length: int = 16, delay: float = 0.0,
                 gate: threading.Event | None = None):
        self.task = task
        self.tokenizer = FullTokenizer(TINY_VOCAB)
        self.config = BertConfig(vocab_size=len(self.tokenizer), hidden_size=4, num_attention_heads=1)
        self.max_seq_length = max_seq_length
        self.labels = ["short", "long"] if task == "text-classification" else None
        self.delay = delay
        self.gate = gate
        self.batches: list[list[list[int]]] = []  # the input_ids of every batch run
        self._lock = threading.Lock()
        self._fire = self.tokenizer.vocab["fire"]
        self.options = {"normalize": False}  # call options: to pre/postprocess, as the pipeline's

    def info(self):
        return {"task": self.task, "labels": self.labels, "max_seq_length": self.max_seq_length}

    # The real pipeline's vocabulary checks: they need only the tokenizer.
    _vocabulary_warned = False
    check_vocabulary = Pipeline.check_vocabulary
    unknown_tokens = Pipeline.unknown_tokens

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
        ids = self.tokenizer.text_to_ids(item)
        truncated = len(ids) > self.max_seq_length - 2
        ids = [self.tokenizer.cls_token_id, *ids[:self.max_seq_length - 2], self.tokenizer.sep_token_id]
        return [Feature(ids, [0] * len(ids), truncated=truncated)]

    def num_tokens(self, feature):
        return len(feature.input_ids)

    def forward(self, features):
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

    def postprocess(self, item, features, outputs, normalize=False):
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
