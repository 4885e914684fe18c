"""Extract contextual vectors, as Google's extract_features.py, or one vector per sentence.

    # Google's JSON lines: the chosen layers for every token
    bertkit extract_features --input_file=input.txt --output_file=output.jsonl --layers=-1,-2,-3,-4
    # sentence vectors (mean pooling, L2-normalised), as a (N, H) .npy array
    bertkit extract_features --input_file=input.txt --output_file=vectors.npy --pooling=mean --normalize

input.txt holds one text per line; `text a ||| text b` encodes a pair.
"""

from __future__ import annotations

import logging

from bertkit.cli.common import ModelSource, add_model_arguments, load_model, load_tokenizer
from bertkit.cli.main import str2bool
from bertkit.extract_features import POOLINGS, FeatureExtractor, read_examples, write_jsonl, write_npy
from bertkit.heads import BertModel

logger = logging.getLogger("bertkit")


def add_arguments(parser) -> None:
    parser.add_argument("--input_file", required=True)
    parser.add_argument("--output_file", required=True, help=".jsonl (or .json) for records, .npy for vectors")
    add_model_arguments(parser)
    parser.add_argument("--layers", default="-1,-2,-3,-4", help="token features: comma-separated layer indexes")
    parser.add_argument("--pooling", choices=POOLINGS, default=None,
                        help="write one vector per line instead of per-token records")
    parser.add_argument("--normalize", type=str2bool, nargs="?", const=True, default=False,
                        help="L2-normalise sentence vectors")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)


def run(args) -> int:
    source = ModelSource.from_args(args)
    model = load_model(source, BertModel)
    tokenizer = load_tokenizer(source, model.config)
    examples = read_examples(args.input_file)
    extractor = FeatureExtractor(model, tokenizer, args.max_seq_length, args.batch_size, progress=True)
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
        try:
            layers = [int(x) for x in args.layers.split(",")]
        except ValueError:
            layers = None
        if not layers:
            from bertkit.errors import ConfigError

            raise ConfigError(f"--layers={args.layers!r}: expected comma-separated integers such as -1,-2,-3,-4")
        count = write_jsonl(extractor.token_features(examples, layers), args.output_file)
        logger.info("wrote %d records (layers %s) to %s", count, layers, args.output_file)
    return 0
