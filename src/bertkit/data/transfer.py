"""Transfer sets: more inputs for the teacher to label while a student is distilled.

A small task shows the student only a few thousand of the teacher's decisions (MRPC: 3,668 pairs).
The teacher can label any input, so the student can learn from more inputs than there are labels
(Hinton et al., 2015, call such inputs a transfer set). Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks") make one by perturbing the
training inputs; TinyBERT (Jiao et al., 2020) does the same with word replacements.

A transfer set is a comma-separated list of sources:

    swap                   the training pairs with their two texts exchanged (pair tasks)
    mask:K                 K copies of every training input, each word replaced by [MASK] with
                           probability 0.1 (Tang et al.'s masking; every piece of the word masked)
    TASK=DIR               the training inputs of another GLUE task, e.g. STS-B=$GLUE_DIR/STS-B

Transfer examples carry the label -100: the student learns them from the teacher's soft targets
alone, and the hard loss counts the real labels only.

    train = with_transfer_set(train, parse_transfer_set("swap,mask:2"), processor, examples, ...)
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from torch.utils.data import ConcatDataset

from bertkit.data.batching import FeatureDataset
from bertkit.data.glue import DataProcessor, InputExample, convert_examples_to_features, get_processor
from bertkit.errors import ConfigError

logger = logging.getLogger("bertkit.compress")

UNLABELED = -100  # ignored by the cross-entropy; the distillation trainer drops the hard loss for it
MASK_PROBABILITY = 0.1  # Tang et al.'s p_mask


@dataclass(frozen=True)
class TransferSource:
    kind: str  # "swap", "mask" or "task"
    copies: int = 1  # mask: copies of each training input
    task_name: str | None = None  # task: the other GLUE task
    data_dir: str | None = None


def parse_transfer_set(text: str | None) -> list[TransferSource]:
    """`swap,mask:4,STS-B=DIR` -> its sources; None or "" or "none" -> []."""
    if not text or text.strip().lower() == "none":
        return []
    sources = []
    for part in (p.strip() for p in text.split(",")):
        mask = re.fullmatch(r"mask:(\d+)", part.lower())
        if part.lower() == "swap":
            sources.append(TransferSource("swap"))
        elif mask and int(mask.group(1)) > 0:
            sources.append(TransferSource("mask", copies=int(mask.group(1))))
        elif "=" in part:
            task_name, data_dir = (s.strip() for s in part.split("=", 1))
            get_processor(task_name)  # an unknown task name is an error that lists the known ones
            if not Path(data_dir).is_dir():
                raise ConfigError(f"--transfer_set {part!r}: {data_dir} is not a directory; give the task's GLUE "
                                  "folder (with train.tsv)")
            sources.append(TransferSource("task", task_name=task_name, data_dir=data_dir))
        else:
            raise ConfigError(f"--transfer_set: {part!r} is not a source; use swap, mask:K (K >= 1) or TASK=DIR, "
                              "comma-separated, e.g. swap,mask:4,STS-B=glue/STS-B")
    return sources


def mask_words(input_ids: Sequence[int], continuation: set[int], special: set[int], mask_id: int,
               rng: random.Random) -> list[int]:
    """Replace each word (a piece and the `##` pieces after it) by [MASK]s with probability
    MASK_PROBABILITY; special tokens stay."""
    out, masking = list(input_ids), False
    for i, token in enumerate(input_ids):
        if token in special:
            masking = False
            continue
        if token not in continuation:
            masking = rng.random() < MASK_PROBABILITY
        if masking:
            out[i] = mask_id
    return out


def unlabeled_features(examples: list[InputExample], processor: DataProcessor, max_seq_length: int,
                       tokenizer) -> FeatureDataset:
    """Features of examples whose label the teacher gives: labels -100."""
    labels = processor.get_labels()
    placeholder = labels[0] if labels else 0.0
    examples = [InputExample(e.guid, e.text_a, e.text_b, placeholder) for e in examples]
    features = convert_examples_to_features(examples, labels, max_seq_length, tokenizer, pad_to_max_length=False,
                                            progress=False)
    for feature in features:
        feature.labels = UNLABELED
    return FeatureDataset(features)


class TransferDataset(ConcatDataset):
    """The training set followed by its transfer examples, with the lengths the length-grouped
    sampler reads."""

    @property
    def lengths(self) -> list[int]:
        return [n for dataset in self.datasets for n in dataset.lengths]


def with_transfer_set(train: FeatureDataset, sources: list[TransferSource], processor: DataProcessor,
                      train_examples: list[InputExample], tokenizer, max_seq_length: int,
                      seed: int = 0) -> FeatureDataset | TransferDataset:
    """`train` extended by the transfer examples of `sources` (see the module docstring)."""
    if not sources:
        return train
    if processor.is_regression:
        raise ConfigError("transfer sets need a classification task: a regression label has no 'unlabelled' "
                          "value to mark transfer examples with")
    pairs = train_examples[0].text_b is not None if train_examples else True
    parts: list = [train]
    counts = []
    rng = random.Random(seed)
    for source in sources:
        if source.kind == "swap":
            if not pairs:
                raise ConfigError("--transfer_set swap needs a sentence-pair task; this one has single sentences")
            part = unlabeled_features([InputExample(f"{e.guid}-swap", e.text_b, e.text_a) for e in train_examples],
                                      processor, max_seq_length, tokenizer)
            name = "swapped pairs"
        elif source.kind == "task":
            other = get_processor(source.task_name).get_examples(source.data_dir, "train")
            if other and (other[0].text_b is not None) != pairs:
                raise ConfigError(f"--transfer_set {source.task_name}={source.data_dir}: {source.task_name} has "
                                  f"{'pairs' if other[0].text_b is not None else 'single sentences'} but the task "
                                  f"has {'pairs' if pairs else 'single sentences'}")
            part = unlabeled_features(other, processor, max_seq_length, tokenizer)
            name = f"{source.task_name} training inputs"
        else:
            vocab = tokenizer.vocab
            if "[MASK]" not in vocab:
                raise ConfigError(f"--transfer_set mask:{source.copies}: {tokenizer.vocab_file} has no [MASK] token")
            continuation = {i for piece, i in vocab.items() if piece.startswith("##")}
            special = {vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in vocab}
            rows = []
            for _ in range(source.copies):
                for i in range(len(train)):
                    row = train[i]
                    masked = mask_words(row["input_ids"], continuation, special, vocab["[MASK]"], rng)
                    rows.append({**row, "input_ids": masked, "labels": UNLABELED})
            part = FeatureDataset(rows)
            name = f"masked copies ({source.copies} per input)"
        parts.append(part)
        counts.append(f"{len(part):,} {name}")
    logger.info("transfer set: %s, labelled by the teacher (the training set has %s examples)", "; ".join(counts),
                f"{len(train):,}")
    return TransferDataset(parts)
