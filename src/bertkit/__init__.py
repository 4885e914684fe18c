"""bertkit: Google's BERT re-implemented in PyTorch.

    from bertkit import BertConfig, FullTokenizer, BertModel, BertForSequenceClassification
    model = BertForSequenceClassification.from_pretrained("path/to/checkpoint", num_labels=2)
    print(model.load_report)
"""

from bertkit.checkpoint.report import LoadReport
from bertkit.checkpoint.surgery import Surgery, reinit_parameters, reinit_top_layers, resize_position_embeddings
from bertkit.config import BertConfig
from bertkit.errors import BertkitError, CheckpointError, ConfigError, DataError
from bertkit.int8 import quantize
from bertkit.heads import (
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from bertkit.tokenization import BasicTokenizer, FullTokenizer, WordpieceTokenizer

__version__ = "0.1.0"


def __getattr__(name):
    # `bertkit.pipeline` imports every task's code (and the Trainer): only when it is asked for.
    if name == "pipeline":
        from bertkit.inference.pipeline import pipeline

        return pipeline
    raise AttributeError(f"module 'bertkit' has no attribute {name!r}")


__all__ = [
    "BasicTokenizer", "BertConfig", "BertForMultipleChoice", "BertForPreTraining", "BertForQuestionAnswering",
    "BertForSequenceClassification", "BertForTokenClassification", "BertModel", "BertkitError",
    "CheckpointError", "ConfigError", "DataError", "FullTokenizer", "LoadReport", "WordpieceTokenizer",
    "Surgery", "pipeline", "quantize", "reinit_parameters", "reinit_top_layers", "resize_position_embeddings",
]

