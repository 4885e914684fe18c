"""Cosine similarity of two texts' sentence vectors (mean pooling, as all-MiniLM-L6-v2 was trained).

    bertkit similarity "A man is eating food." "A man is eating a meal."
"""

from __future__ import annotations

from bertkit.cli.common import (ModelSource, add_dtype_argument, add_max_seq_length_argument, add_model_arguments,
                                load_model, load_tokenizer, max_seq_length_for, with_precision)
from bertkit.extract_features import POOLINGS, FeatureExtractor
from bertkit.heads import BertModel


def add_arguments(parser) -> None:
    parser.add_argument("text_a")
    parser.add_argument("text_b", nargs="+", help="one or more texts to compare with text_a")
    add_model_arguments(parser)
    parser.add_argument("--pooling", choices=POOLINGS, default="mean")
    add_max_seq_length_argument(parser, default=256)
    add_dtype_argument(parser)


def run(args) -> int:
    source = ModelSource.from_args(args)
    model = with_precision(load_model(source, BertModel), args.dtype)
    tokenizer = load_tokenizer(source, model.config)
    vectors = FeatureExtractor(model, tokenizer, max_seq_length_for(args, model.config)).sentence_vectors(
        [args.text_a, *args.text_b], args.pooling, normalize=True)
    for text, vector in zip(args.text_b, vectors[1:]):
        print(f"{float(vectors[0] @ vector):.4f}  {args.text_a!r} ~ {text!r}")
    return 0
