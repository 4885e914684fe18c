"""Learn a WordPiece vocabulary from a text corpus, for pre-training from scratch.

Google released BERT's vocabularies but not the tool that made them. This learner follows what
people use in its place (the WordPiece trainer of Hugging Face's `tokenizers`): split words
exactly as `BasicTokenizer` does, start from single characters (a word-initial "a", and "##a"
inside a word), and repeatedly merge the most frequent adjacent pair of pieces within words,
until the vocabulary has the size asked for. The learned vocabulary is read back by
`FullTokenizer` like any other `vocab.txt`.

Why bother when bert-base's vocabulary exists: a small model pre-trained on a few million words
sees most of bert-base's 30,522 pieces rarely or never. Their embedding rows stay near their
random start, and the MLM decoder (tied to the embeddings) spends most of its time on them. A
vocabulary learned from the corpus itself makes every row a piece the model actually reads.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from bertkit.data.pretraining import expand_input_files
from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write, read_text_lines
from bertkit.tokenization import BasicTokenizer

# The special tokens first, [PAD] at id 0 (the padding id every config assumes).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def count_words(lines: Iterable[str], do_lower_case: bool = True) -> Counter:
    """Frequencies of the words BasicTokenizer makes of `lines` (punctuation split off)."""
    basic = BasicTokenizer(do_lower_case=do_lower_case)
    counts: Counter = Counter()
    for line in lines:
        counts.update(basic.tokenize(line))
    return counts


def _join(left: str, right: str) -> str:
    return left + right[2:]  # right is always a continuation piece "##..."


def learn_wordpiece_vocab(word_counts: Counter, vocab_size: int, min_frequency: int = 2,
                          max_alphabet: int = 1000, progress: bool = True) -> list[str]:
    """The vocabulary, in id order: special tokens, the alphabet, then merged pieces in the order
    they were learned. Words seen fewer than `min_frequency` times are left out of the counts, so
    rare typos do not earn pieces; characters beyond the `max_alphabet` most frequent ones become
    [UNK] when tokenized (a corpus of English with a few stray scripts does not need them all)."""
    words = [(word, count) for word, count in word_counts.items() if count >= min_frequency]
    if not words:
        raise ConfigError(f"no word occurs at least {min_frequency} times: use a larger corpus or "
                          "a lower --min_frequency")
    # Each word as a list of pieces: "word" -> ["w", "##o", "##r", "##d"].
    symbols = [[word[0], *("##" + char for char in word[1:])] for word, _ in words]
    frequencies = [count for _, count in words]
    alphabet_counts: Counter = Counter()
    for pieces, count in zip(symbols, frequencies):
        for piece in pieces:
            alphabet_counts[piece] += count
    # Ties broken by the piece itself, so that the vocabulary does not depend on dict order.
    alphabet = sorted(sorted(alphabet_counts), key=lambda piece: -alphabet_counts[piece])[:max_alphabet]
    vocab = [*SPECIAL_TOKENS, *sorted(alphabet)]
    if vocab_size < len(vocab):
        raise ConfigError(f"vocab_size {vocab_size} is smaller than the {len(SPECIAL_TOKENS)} special tokens plus "
                          f"the corpus's {len(alphabet)}-character alphabet: ask for at least {len(vocab)}")
    known = set(vocab)
    # Words holding a character outside the alphabet would tokenize to [UNK] whole; they teach
    # no merges.
    keep = [i for i, pieces in enumerate(symbols) if all(piece in known for piece in pieces)]
    symbols = [symbols[i] for i in keep]
    frequencies = [frequencies[i] for i in keep]

    pair_counts: defaultdict = defaultdict(int)
    pair_words: defaultdict = defaultdict(set)  # pair -> indices of words that (may) hold it
    for index, (pieces, count) in enumerate(zip(symbols, frequencies)):
        for pair in zip(pieces, pieces[1:]):
            pair_counts[pair] += count
            pair_words[pair].add(index)
    # A max-heap of (-count, pair); entries go stale as counts change and are skipped when popped.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    bar = tqdm(total=vocab_size, initial=len(vocab), desc="Learning WordPiece", unit="piece",
               disable=not progress)
    while len(vocab) < vocab_size and heap:
        negative_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative_count:
            continue
        merged = _join(*pair)
        changed: set = set()
        for index in pair_words.pop(pair):
            pieces, count = symbols[index], frequencies[index]
            if not any(p == pair for p in zip(pieces, pieces[1:])):
                continue
            for old in zip(pieces, pieces[1:]):
                pair_counts[old] -= count
                changed.add(old)
            out, i = [], 0
            while i < len(pieces):
                if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            symbols[index] = out
            for new in zip(out, out[1:]):
                pair_counts[new] += count
                pair_words[new].add(index)
                changed.add(new)
        for changed_pair in changed:
            count = pair_counts[changed_pair]
            if count > 0:
                heapq.heappush(heap, (-count, changed_pair))
            else:
                del pair_counts[changed_pair]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
            bar.update()
    bar.close()
    return vocab


def build_vocab(input_files, output_file: str | Path, vocab_size: int, do_lower_case: bool = True,
                min_frequency: int = 2, progress: bool = True) -> list[str]:
    """Learn a vocabulary from text files (comma-separated names and globs, as Google's
    --input_file; any line layout, e.g. create_pretraining_data's input) and write it atomically
    as `output_file`, one piece per line."""
    counts: Counter = Counter()
    for path in expand_input_files(input_files):
        # A binary file is an error, as in create_pretraining_data: read with replacement
        # characters it would teach a vocabulary of garbage.
        lines = (line for _, line in read_text_lines(path, "a text corpus"))
        counts.update(count_words(lines, do_lower_case))
    vocab = learn_wordpiece_vocab(counts, vocab_size, min_frequency, progress=progress)
    with atomic_write(output_file) as handle:
        handle.write("".join(piece + "\n" for piece in vocab))
    return vocab
