"""Build masked-LM / next-sentence pre-training instances, with Google's create_pretraining_data.py flags.

    bertkit create_pretraining_data --input_file=corpus.txt --output_dir=/tmp/pretraining_128 \\
        --vocab_file=$BERT_BASE_DIR/vocab.txt --do_lower_case=true --max_seq_length=128 \\
        --max_predictions_per_seq=20 --masked_lm_prob=0.15 --random_seed=12345 --dupe_factor=5

Input: one sentence per line, a blank line between documents (comma-separated files and globs).
Output: a folder of memory-mapped numpy shards and index.json, read by `bertkit run_pretraining
--input_file=FOLDER` (the folder replaces Google's --output_file TFRecords).

The corpus is streamed: it is read in chunks of --chunk_documents documents (or --chunk_tokens
tokens), and the random next sentence of an NSP pair comes from another document of the same
chunk, so memory stays bounded whatever the corpus size. See bertkit.data.pretraining.

Chinese (one review or article per line, sentences not on lines of their own), with Chinese
whole-word masking (word boundaries from jieba: pip install 'bertkit[zh]'):

    bertkit create_pretraining_data --input_file=reviews.txt --output_dir=/tmp/zh_128 \
        --vocab_file=vocab/bert-base-chinese/vocab.txt --one_document_per_line --split_sentences \
        --do_whole_word_mask --word_segmenter=jieba
"""

from __future__ import annotations

from bertkit.cli.main import str2bool
from bertkit.data.pretraining import SEGMENTERS, PretrainingDataConfig, create_pretraining_data
from bertkit.io_utils import check_output_dir
from bertkit.tokenization import FullTokenizer


def add_arguments(parser) -> None:
    flag = dict(type=str2bool, nargs="?", const=True, default=False, metavar="BOOL")
    google = parser.add_argument_group("Google's flags")
    google.add_argument("--input_file", required=True,
                        help="input text files, comma-separated, globs allowed (one sentence per line, "
                             "blank lines between documents)")
    google.add_argument("--output_dir", "--output_file", dest="output_dir", required=True,
                        help="folder for the shards and index.json")
    google.add_argument("--vocab_file", required=True, help="the vocab.txt the model is trained with")
    google.add_argument("--do_lower_case", type=str2bool, default=None, metavar="BOOL",
                        help="lower-case the input (default: tokenizer_config.json beside the vocab, else true)")
    google.add_argument("--do_whole_word_mask", **flag, help="mask all the WordPieces of a word together")
    google.add_argument("--max_seq_length", type=int, default=128)
    google.add_argument("--max_predictions_per_seq", type=int, default=20)
    google.add_argument("--random_seed", type=int, default=12345)
    google.add_argument("--dupe_factor", type=int, default=10, help="passes over the corpus, each with other masks")
    google.add_argument("--masked_lm_prob", type=float, default=0.15)
    google.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="probability of an instance shorter than max_seq_length")
    ours = parser.add_argument_group("bertkit's flags")
    ours.add_argument("--word_segmenter", choices=SEGMENTERS, default=None,
                      help="with --do_whole_word_mask: the words of Chinese text from this segmenter (Chinese "
                           "whole-word masking); without it every CJK character is a word")
    ours.add_argument("--one_document_per_line", **flag, help="every line is a document (e.g. one review per line)")
    ours.add_argument("--split_sentences", **flag,
                      help="cut lines into sentences after 。！？ (full-width or ASCII !?) and …")
    ours.add_argument("--chunk_documents", type=int, default=1000,
                      help="documents per chunk: random next sentences come from the same chunk")
    ours.add_argument("--chunk_tokens", type=int, default=1_000_000, help="... or at most this many tokens per chunk")
    ours.add_argument("--instances_per_shard", type=int, default=20_000,
                      help="instances per shard; also bounds memory (the shard being built is held)")


def run(args) -> int:
    check_output_dir(args.output_dir)
    config = PretrainingDataConfig(
        max_seq_length=args.max_seq_length, max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob, dupe_factor=args.dupe_factor, short_seq_prob=args.short_seq_prob,
        do_whole_word_mask=args.do_whole_word_mask, random_seed=args.random_seed,
        chunk_documents=args.chunk_documents, chunk_tokens=args.chunk_tokens, word_segmenter=args.word_segmenter,
        one_document_per_line=args.one_document_per_line, split_sentences=args.split_sentences,
        instances_per_shard=args.instances_per_shard)
    tokenizer = FullTokenizer.from_pretrained(args.vocab_file, do_lower_case=args.do_lower_case)
    index = create_pretraining_data(args.input_file, args.output_dir, tokenizer, config)
    for key in ("num_documents", "num_sentences", "num_corpus_tokens", "num_instances", "num_tokens",
                "num_masked_lm", "num_random_next"):
        print(f"{key} = {index[key]}")
    print(f"shards = {len(index['shards'])}")
    return 0
