"""The task registry: lookups, and a toy task added as a new task is (its module and one registry
line), then trained by run_task and served by pipeline(dir) with nothing else changed."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from bertkit.config import BertConfig
from bertkit.data.batching import FeatureDataset
from bertkit.data.glue import encode_text_pair
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from bertkit.inference.pipeline import pipeline
from bertkit.tasks import registry
from bertkit.tasks.base import Split, Task, run_task
from bertkit.tasks.pipeline import Feature, Pipeline, check_texts
from bertkit.tokenization import FullTokenizer
from bertkit.training.trainer import TrainingArguments
from helpers import TINY_VOCAB, tiny_config


def test_lookups_by_name_alias_architecture_and_weights():
    assert registry.get("ner") is registry.get("token-classification")
    assert registry.for_architecture("BertForMaskedLM").name == "fill-mask"
    assert registry.for_architecture("BertForSomethingElse") is None
    assert registry.get("question-answering").onnx_outputs == ("start_logits", "end_logits")
    head, overrides = registry.for_weights({"bert.pooler.dense.weight", "classifier.weight"},
                                           {"classifier.weight": (3, 32)})
    assert head.__name__ == "BertForSequenceClassification" and overrides == {"num_labels": 3}
    assert registry.for_weights({"qa_outputs.weight"})[0].__name__ == "BertForQuestionAnswering"
    assert registry.for_weights({"bert.pooler.dense.weight"})[0].__name__ == "BertModel"
    with pytest.raises(ConfigError, match="unknown task 'nope'; use one of text-classification"):
        registry.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("fill-mask"))


# -- the toy task: "text-length", a regression of a text's length in words ------------------------
# Everything a task is lives here: its head, its training Task and its Pipeline; one register() line
# (in the real registry: a line at the end of bertkit/tasks/registry.py) makes it known everywhere.


class BertForTextLength(BertForSequenceClassification):
    """The toy task's head: one score from [CLS] (config.json's `architectures` records this name)."""


def encode(tokenizer, text: str, max_seq_length: int) -> tuple[list[int], list[int]]:
    """The toy task's one text -> features function, for training and prediction alike."""
    return encode_text_pair(tokenizer, text, None, max_seq_length)[:2]


@dataclass
class TextLengthTask(Task):
    texts: tuple[str, ...] = ()
    max_seq_length: int = 16
    do_train: bool = True
    do_eval: bool = True
    name = "text-length"
    model_class = BertForTextLength

    def dataset(self, split, tokenizer, args) -> Split:
        rows = []
        for text in self.texts:
            ids, types = encode(tokenizer, text, self.max_seq_length)
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "token_type_ids": types,
                         "labels": float(len(text.split()))})
        return Split(split, FeatureDataset(rows), examples=list(self.texts))

    def metadata(self) -> dict:
        return {"problem_type": "regression"}

    def metrics(self, data: Split, predictions, labels) -> dict[str, float]:
        assert len(data.examples) == len(predictions)  # the split's data comes with its predictions
        return {"mse": float(np.mean((predictions.squeeze(-1) - labels) ** 2))}


class TextLengthPipeline(Pipeline):
    task = "text-length"

    def parse(self, texts=None, **kwargs):
        return check_texts(texts)

    def preprocess(self, text, **options):
        return [Feature(*encode(self.tokenizer, text, self.max_seq_length))]

    def _outputs(self, batch, features):
        return list(self.model(**batch).logits.float().cpu().numpy())

    def postprocess(self, text, features, outputs, **options):
        return {"words": float(outputs[0][0])}


@pytest.fixture
def toy_task():
    spec = registry.register(registry.TaskSpec("text-length", BertForTextLength, TextLengthPipeline, TextLengthTask))
    yield spec
    registry.unregister(spec.name)


def test_a_new_task_is_its_module_and_one_registry_line(tmp_path, toy_task):
    torch.manual_seed(0)
    tokenizer = FullTokenizer(TINY_VOCAB)
    model = BertForTextLength(tiny_config(vocab_size=len(tokenizer), num_labels=1))
    task = TextLengthTask(texts=("the cat", "the cat sat", "a dog sat on the mat", "the"))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, train_batch_size=2, progress=False,
                             save_checkpoints_steps=None)
    results = run_task(task, model, tokenizer, args)
    assert "eval_mse" in results

    config = BertConfig.from_json_file(tmp_path / "config.json")
    assert config.extra["architectures"] == ["BertForTextLength"]
    assert (config.task_metadata.finetuning_task, config.task_metadata.problem_type) == ("text-length", "regression")
    p = pipeline(tmp_path, device="cpu")  # the task comes from the registry, by the saved architecture
    assert isinstance(p, TextLengthPipeline) and type(p.model) is BertForTextLength and p.max_seq_length == 16
    answers = p(["the cat", "a dog sat"])
    assert [set(a) for a in answers] == [{"words"}, {"words"}]
    assert p.split_options({"texts": "x"}) == ({}, {"texts": "x"})
