"""Extract contextual vectors, as Google's extract_features.py, or one vector per sentence.

    # Google's JSON lines: the chosen layers for every token
    bertkit extract_features --input_file=input.txt --output_file=output.jsonl --layers=-1,-2,-3,-4
    # sentence vectors (mean pooling, L2-normalised), as a (N, H) .npy array
    bertkit extract_features --input_file=input.txt --output_file=vectors.npy --pooling=mean --normalize

input.txt holds one text per line; `text a ||| text b` encodes a pair.
"""

from __future__ import annotations

import logging

from bertkit.cli.common import (ModelSource, add_dtype_argument, add_max_seq_length_argument, add_model_arguments,
                                load_model, load_tokenizer, max_seq_length_for, with_precision)
from bertkit.cli.main import positive_int, str2bool
from bertkit.errors import ConfigError
from bertkit.extract_features import POOLINGS, FeatureExtractor, read_examples, write_jsonl, write_npy
from bertkit.heads import BertModel
from bertkit.io_utils import check_output_file

logger = logging.getLogger("bertkit")


def add_arguments(parser) -> None:
    parser.add_argument("--input_file", required=True)
    parser.add_argument("--output_file", required=True, help=".jsonl (or .json) for records, .npy for vectors")
    add_model_arguments(parser)
    parser.add_argument("--layers", default=None,
                        help="token features: comma-separated layer indexes, -1 the top one "
                             "(default: -1,-2,-3,-4, or every layer of a model with fewer)")
    parser.add_argument("--pooling", choices=POOLINGS, default=None,
                        help="write one vector per line instead of per-token records")
    parser.add_argument("--normalize", type=str2bool, nargs="?", const=True, default=False,
                        help="L2-normalise sentence vectors")
    add_max_seq_length_argument(parser)
    parser.add_argument("--batch_size", type=positive_int, default=64)
    # The fidelity gates are measured on pooled sentence vectors: per-token records (Google's
    # JSON, often compared value by value) stay fp32 unless asked.
    add_dtype_argument(parser, default=None, default_text="auto with --pooling, fp32 for token records")


def _parse_layers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        layers = [int(x) for x in text.split(",")]
    except ValueError:
        layers = None
    if not layers:
        raise ConfigError(f"--layers={text!r}: expected comma-separated integers such as -1,-2,-3,-4")
    return layers


def run(args) -> int:
    # Everything that can be checked without the model is, before it loads.
    layers = None if args.pooling else _parse_layers(args.layers)
    check_output_file(args.output_file)
    examples = read_examples(args.input_file)
    source = ModelSource.from_args(args)
    model = with_precision(load_model(source, BertModel), args.dtype or ("auto" if args.pooling else "fp32"))
    tokenizer = load_tokenizer(source, model.config)
    extractor = FeatureExtractor(model, tokenizer, max_seq_length_for(args, model.config), args.batch_size,
                                 progress=True)
    if args.pooling:
        vectors = extractor.sentence_vectors(examples, args.pooling, args.normalize)
        if args.output_file.endswith(".npy"):
            write_npy(vectors, args.output_file)
        else:
            write_jsonl(({"linex_index": e.unique_id, "vector": v.tolist()} for e, v in zip(examples, vectors)),
                        args.output_file)
        logger.info("wrote %d %s-pooled vectors of size %d to %s", len(vectors), args.pooling, vectors.shape[1],
                    args.output_file)
    else:
        layers = extractor.check_layers(layers)
        count = write_jsonl(extractor.token_features(examples, layers), args.output_file)
        logger.info("wrote %d records (layers %s) to %s", count, layers, args.output_file)
    return 0
