"""Learn a WordPiece vocabulary (vocab.txt) from text, for pre-training from scratch.

    bertkit build_vocab --input_file=corpus.txt --output_file=vocab.txt --vocab_size=8192

Words are split as the tokenizer splits them (lower-cased unless --do_lower_case=false), then
the most frequent adjacent pieces are merged until the vocabulary holds --vocab_size pieces:
[PAD] [UNK] [CLS] [SEP] [MASK], the characters, then the merged pieces. Pass the file to
create_pretraining_data and run_pretraining as --vocab_file. See bertkit.vocab.
"""

from __future__ import annotations

from bertkit.cli.main import str2bool
from bertkit.io_utils import check_output_file
from bertkit.vocab import build_vocab


def add_arguments(parser) -> None:
    parser.add_argument("--input_file", required=True, help="text files, comma-separated, globs allowed")
    parser.add_argument("--output_file", required=True, help="where to write vocab.txt")
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--do_lower_case", type=str2bool, default=True, metavar="BOOL")
    parser.add_argument("--min_frequency", type=int, default=2,
                        help="words rarer than this teach no merges (typos, stray tokens)")
    parser.add_argument("--no_progress", action="store_true")


def run(args) -> int:
    check_output_file(args.output_file)
    vocab = build_vocab(args.input_file, args.output_file, args.vocab_size, args.do_lower_case,
                        args.min_frequency, progress=not args.no_progress)
    print(f"wrote {args.output_file}: {len(vocab)} pieces")
    return 0
