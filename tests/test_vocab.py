"""bertkit.vocab: learning a WordPiece vocabulary from a corpus."""

from __future__ import annotations

from collections import Counter

import pytest

from bertkit.cli.main import main
from bertkit.errors import BertkitError, ConfigError
from bertkit.tokenization import FullTokenizer
from bertkit.vocab import SPECIAL_TOKENS, build_vocab, count_words, learn_wordpiece_vocab

# The textbook BPE example: "est" is the most frequent ending, "low" the most frequent start.
WORDS = Counter({"low": 5, "lower": 2, "newest": 6, "widest": 3})


def test_special_tokens_then_alphabet_then_merges_in_order():
    vocab = learn_wordpiece_vocab(WORDS, vocab_size=30, min_frequency=1, progress=False)
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS) and vocab[0] == "[PAD]"
    alphabet = {"l", "n", "w", "##o", "##w", "##e", "##r", "##s", "##t", "##i", "##d"}
    assert set(vocab[5:5 + len(alphabet)]) == alphabet
    merges = vocab[5 + len(alphabet):]
    # ("##e", "##s") occurs 9 times (newest 6 + widest 3), more than any other pair; then "##es"+"##t".
    assert merges[:2] == ["##es", "##est"]
    assert {"low", "lower", "newest", "widest"} <= set(merges)
    assert len(vocab) == len(set(vocab)) <= 30


def test_stops_at_the_size_asked_and_is_deterministic():
    first = learn_wordpiece_vocab(WORDS, vocab_size=20, min_frequency=1, progress=False)
    assert len(first) == 20
    assert first == learn_wordpiece_vocab(Counter(dict(reversed(WORDS.items()))), vocab_size=20, min_frequency=1,
                                          progress=False)


def test_rare_words_and_characters_are_left_out():
    counts = Counter({"hello": 10, "help": 8, "zzyzx": 1})
    vocab = learn_wordpiece_vocab(counts, vocab_size=50, min_frequency=2, progress=False)
    assert "z" not in vocab and "##x" not in vocab
    # max_alphabet keeps the most frequent characters; a word holding another teaches nothing.
    vocab = learn_wordpiece_vocab(Counter({"aaab": 5, "aa": 5}), vocab_size=50, min_frequency=1, max_alphabet=2,
                                  progress=False)
    assert "##b" not in vocab and "aa" in vocab and "aaab" not in vocab


def test_too_small_a_vocab_size_says_how_large_it_must_be():
    with pytest.raises(ConfigError, match="at least 16"):
        learn_wordpiece_vocab(WORDS, vocab_size=10, min_frequency=1, progress=False)
    with pytest.raises(ConfigError, match="min_frequency"):
        learn_wordpiece_vocab(Counter({"once": 1}), vocab_size=100, progress=False)


def test_count_words_splits_as_the_tokenizer_does():
    assert count_words(["Hello, World!", "hello"]) == Counter({"hello": 2, ",": 1, "world": 1, "!": 1})
    assert count_words(["Hello"], do_lower_case=False) == Counter({"Hello": 1})


def test_cli_writes_a_vocab_the_tokenizer_reads(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog.\n\nThe dog sleeps; the fox runs.\n" * 20)
    vocab_file = tmp_path / "vocab.txt"
    assert main(["-q", "build_vocab", f"--input_file={corpus}", f"--output_file={vocab_file}",
                 "--vocab_size=60", "--no_progress"]) == 0
    tokenizer = FullTokenizer(vocab_file)
    assert len(tokenizer) == 60 and tokenizer.pad_token_id == 0
    pieces = tokenizer.tokenize("The lazy fox sleeps.")
    assert "[UNK]" not in pieces and "".join(p.removeprefix("##") for p in pieces) == "thelazyfoxsleeps."
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_cli_names_a_missing_input_file(tmp_path):
    with pytest.raises(BertkitError, match="missing.txt"):
        build_vocab(str(tmp_path / "missing.txt"), tmp_path / "vocab.txt", 100)
