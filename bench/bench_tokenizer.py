"""Tokenizer throughput: bertkit vs transformers' BertTokenizer (Rust) and BertTokenizerLegacy.

Encodes the MRPC train pairs (3668) as [CLS] a [SEP] b [SEP] with max_seq_length 128 and
longest-first truncation, single-threaded, every tokenizer producing plain Python lists of
input_ids / token_type_ids / attention_mask. Cold is the first pass of a freshly built
tokenizer (bertkit's word cache and the Rust WordPiece cache empty); warm is the median of
--repeat further passes over the same pairs.

    python bench/bench_tokenizer.py [--data PATH] [--repeat N]
"""

from __future__ import annotations

import os

# Before tokenizers is imported: its Rust thread pool reads these once.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

from bertkit.paths import shared_data_dir
from bertkit.tokenization import FullTokenizer

MAX_SEQ_LENGTH = 128
KEYS = ("input_ids", "token_type_ids", "attention_mask")


def read_mrpc_pairs(path):
    lines = Path(path).read_text(encoding="utf-8").split("\n")[1:]  # the first line is the header
    rows = [line.split("\t") for line in lines if line]
    return [row[3] for row in rows], [row[4] for row in rows]


def measure(tokenizer, encode_all, repeat):
    """(cold seconds, median warm seconds, output of the last pass) of encode_all(tokenizer)."""

    def one_pass():
        gc.collect()
        start = time.perf_counter()
        output = encode_all(tokenizer)
        return time.perf_counter() - start, output

    cold, output = one_pass()
    warm = []
    for _ in range(repeat):
        seconds, output = one_pass()
        warm.append(seconds)
    return cold, statistics.median(warm), output


def as_batch(per_pair_outputs):
    return {key: [output[key] for output in per_pair_outputs] for key in KEYS}


def main():
    default_data = shared_data_dir()
    default_data = default_data / "glue" / "MRPC" / "train.tsv" if default_data else None
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data, help="MRPC train.tsv (default: shared data)")
    parser.add_argument("--repeat", type=int, default=3, help="warm passes per tokenizer (median is reported)")
    parser.add_argument("--vocab", type=Path, default=None, help="vocab.txt (default: shared bert-base-uncased)")
    args = parser.parse_args()

    if args.data is None or not args.data.is_file():
        sys.exit(f"MRPC pairs not found at {args.data}: pass --data PATH/TO/MRPC/train.tsv or set BERTKIT_SHARED_DATA")
    vocab_file = args.vocab or args.data.parents[2] / "vocab" / "bert-base-uncased" / "vocab.txt"
    if not vocab_file.is_file():
        sys.exit(f"vocabulary not found at {vocab_file}: pass --vocab PATH/TO/vocab.txt")
    try:
        import transformers
        from transformers.models.bert.tokenization_bert import load_vocab
    except ImportError:
        sys.exit("the reference tokenizers need transformers: pip install transformers")
    transformers.logging.set_verbosity_error()  # longest_first pair truncation warns on every call

    texts_a, texts_b = read_mrpc_pairs(args.data)
    pairs = list(zip(texts_a, texts_b))
    n = len(pairs)
    kw = {"max_length": MAX_SEQ_LENGTH, "truncation": "longest_first"}

    # BertTokenizer (Rust) gets its vocabulary as a dict: given vocab_file= it silently builds a
    # 5-token vocabulary instead.
    contenders = {
        "bertkit encode (per pair)": (
            lambda: FullTokenizer(vocab_file),
            lambda t: as_batch([t.encode(a, b, max_seq_length=MAX_SEQ_LENGTH) for a, b in pairs]),
        ),
        "bertkit encode_batch": (
            lambda: FullTokenizer(vocab_file),
            lambda t: t.encode_batch(texts_a, texts_b, max_seq_length=MAX_SEQ_LENGTH),
        ),
        "HF fast BertTokenizer (per pair)": (
            lambda: transformers.BertTokenizer(vocab=load_vocab(vocab_file)),
            lambda t: as_batch([t(a, b, **kw) for a, b in pairs]),
        ),
        "HF fast BertTokenizer (batch)": (
            lambda: transformers.BertTokenizer(vocab=load_vocab(vocab_file)),
            lambda t: dict(t(texts_a, texts_b, **kw)),
        ),
        "HF BertTokenizerLegacy (per pair)": (
            lambda: transformers.BertTokenizerLegacy(vocab_file=str(vocab_file)),
            lambda t: as_batch([t(a, b, return_token_type_ids=True, **kw) for a, b in pairs]),
        ),
    }

    print(f"{n} MRPC pairs from {args.data}, max_seq_length={MAX_SEQ_LENGTH}, single thread, "
          f"warm = median of {args.repeat} passes")
    print(f"{'':36s}{'cold pairs/s':>14s}{'warm pairs/s':>14s}")
    rates, outputs = {}, {}
    for name, (make, encode_all) in contenders.items():
        cold, warm, output = measure(make(), encode_all, args.repeat)
        rates[name] = (n / cold, n / warm)
        outputs[name] = {key: output[key] for key in KEYS}
        print(f"{name:36s}{n / cold:14,.0f}{n / warm:14,.0f}")

    print("\nratios                              cold      warm")
    for label, ours, theirs in [
        ("bertkit / fast, per pair", "bertkit encode (per pair)", "HF fast BertTokenizer (per pair)"),
        ("bertkit / fast, batch", "bertkit encode_batch", "HF fast BertTokenizer (batch)"),
        ("bertkit / legacy, per pair", "bertkit encode (per pair)", "HF BertTokenizerLegacy (per pair)"),
    ]:
        cold_ratio = rates[ours][0] / rates[theirs][0]
        warm_ratio = rates[ours][1] / rates[theirs][1]
        print(f"{label:32s}{cold_ratio:8.2f}x{warm_ratio:9.2f}x")

    ours = outputs["bertkit encode_batch"]
    print("\noutputs identical to legacy:", ours == outputs["HF BertTokenizerLegacy (per pair)"],
          "| to fast:", ours == outputs["HF fast BertTokenizer (batch)"],
          "| bertkit per pair == batch:", ours == outputs["bertkit encode (per pair)"])


if __name__ == "__main__":
    main()
