"""from_pretrained / save_pretrained as methods of the public model classes (bertkit.heads).

modeling.py is pure nn code and knows nothing about files; this mixin adds loading and saving to
the classes users load, from the layer above it, so that the imports run one way only:
heads -> checkpoint -> modeling.
"""

from __future__ import annotations

from pathlib import Path

from bertkit.checkpoint import load, save
from bertkit.checkpoint.report import LoadReport


class PretrainedMixin:
    """Put first in the bases: `class BertForX(PretrainedMixin, BertPreTrainedModel)`."""

    # What from_pretrained (and later surgery) did to this model; None for a model built in memory.
    load_report: LoadReport | None = None

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        """Load a checkpoint directory or file (HF or Google layout); see bertkit.checkpoint.load."""
        return load.from_pretrained(cls, path, **kwargs)

    def save_pretrained(self, directory, tokenizer=None) -> Path:
        """Write HF layout (config.json, model.safetensors, vocab.txt) atomically."""
        return save.save_pretrained(self, directory, tokenizer=tokenizer)
