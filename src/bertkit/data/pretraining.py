"""Pre-training data: Google's create_pretraining_data.py, streamed, written as memory-mapped shards.

Input (Google's format): plain UTF-8 text, one sentence per line, a blank line between documents.
Each input file also starts a new document (Google lets a document run on into the next file).

Instances are made with Google's algorithm, step for step and with the same `random.Random`
calls: documents are shuffled; each is cut into chunks of sentences up to a target length
(`max_seq_length - 3`, or with probability `short_seq_prob` a random shorter one); a chunk splits
into segment A (its first `a_end` sentences) and B, the actual continuation, or with
probability 1/2 a random span of another document (NSP label 1, "random next"; the unused
sentences are put back); the pair is truncated from a random end of the longer segment
(`truncate_seq_pair`); then `masked_lm_prob` of its tokens (at least 1, at most
`max_predictions_per_seq`; whole words with `do_whole_word_mask`) are picked, and each picked
position becomes [MASK] 80% of the time, stays itself 10% and becomes a random token 10%
(`create_masked_lm_predictions`). The whole corpus is gone over `dupe_factor` times, with
different masks each time.

Chinese text. BERT's tokenizer makes every CJK character a word of its own, so Google's whole-word
masking masks single characters in Chinese. Chinese whole-word masking (Cui et al. 2019,
Chinese-BERT-wwm) takes word boundaries from a word segmenter instead: with `word_segmenter`
(`jieba`, the optional extra `bertkit[zh]`, or any callable that cuts a line into words), a
character that continues the segmenter's word joins the characters before it as `##` pieces
join theirs, so the whole word is masked together; the tokens themselves do not change. Corpora
that are not one sentence per line: `one_document_per_line` makes each line a document (one
review, one news item), and `split_sentences` cuts lines into sentences after the sentence
end marks 。！？ (full-width and ASCII !?, and …, with any closing quotes), so NSP pairs are
pairs of sentences. Both are off by default: Google's format is one sentence per line.

Where this differs from Google's, and why:

* It streams. Google holds every document in memory, because the random "next" segment may come
  from any document. Here documents are read in chunks of consecutive documents, a chunk ending
  once it holds `chunk_documents` documents or `chunk_tokens` tokens, and the random next segment
  comes from another document *of the same chunk*. A chunk is only closed when at least two
  documents follow it (the last one is kept with it otherwise), so every chunk holds at least two
  documents: only a corpus of one single document cannot give NSP pairs, and is an error.
  Instances go to a shard buffer as compact arrays as they are made and are written out every
  `instances_per_shard` instances. Memory is therefore bounded by one chunk (about
  `chunk_tokens` tokens plus the longest document) plus one shard buffer, whatever the size of
  the corpus. The defaults (1000 documents or 1M tokens) keep the random next segments varied.
* The random next segment always comes from a different document (Google gives up after 10 draws
  that hit the same document and uses it anyway): the other document's index is drawn from the
  n - 1 others directly.
* A random replacement token is never a special token ([PAD], [UNK], [CLS], [SEP], [MASK],
  [unusedN], any `[...]` entry of the vocabulary): Google draws from the whole vocabulary.
* Instances are shuffled within each shard (Google shuffles all of them at once); the Trainer
  shuffles the whole data set every epoch anyway.
* A chunk's random draws come from `random.Random(f"{random_seed}:{chunk_index}")`, so the output
  is a pure function of the input, the vocabulary and the settings.

Output, FORMAT_VERSION 1: a directory with `index.json` and one folder per shard,
`shard-00000/`, ..., each holding numpy `.npy` arrays that `np.load(..., mmap_mode="r")` maps:

    input_ids            int32, every instance's tokens ([CLS] A [SEP] B [SEP], masks applied), concatenated
    segment_ids          int8, aligned with input_ids (0 up to and including the first [SEP], then 1)
    offsets              int64, N + 1: instance i is input_ids[offsets[i]:offsets[i + 1]]
    masked_lm_positions  int32, the masked positions of every instance, ascending, concatenated
    masked_lm_ids        int32, the original tokens at those positions (the MLM labels)
    masked_lm_offsets    int64, N + 1: instance i's predictions are [masked_lm_offsets[i]:masked_lm_offsets[i + 1]]
    next_sentence_labels int8, N: 1 when B is a random next segment, 0 when it is the actual next (Google's)

Nothing is padded: batches are padded by the collator. A shard is written into a temp folder and
renamed into place; `index.json` (counts, settings, vocabulary, shard list) is written last, so a
directory without it is an interrupted run, and readers only read the shards it lists.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import random
import re
import shutil
from array import array
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset

from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import atomic_directory, atomic_write, read_text_lines
from bertkit.tokenization import is_chinese_char

logger = logging.getLogger(__name__)

FORMAT_NAME = "bertkit-pretraining-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARD_PREFIX = "shard-"
SHARD_ARRAYS = {
    "input_ids": np.int32,
    "segment_ids": np.int8,
    "offsets": np.int64,
    "masked_lm_positions": np.int32,
    "masked_lm_ids": np.int32,
    "masked_lm_offsets": np.int64,
    "next_sentence_labels": np.int8,
}
# Vocabulary entries never drawn as random replacements: [PAD], [UNK], [CLS], [SEP], [MASK], [unused0], ...
SPECIAL_TOKEN_RE = re.compile(r"\[[A-Za-z0-9_]+\]")
SEGMENTERS = ("jieba",)
# A sentence ends after a run of these marks and any closing quotes or brackets.
_SENTENCE_END = re.compile("([。！？!?…]+[”’」』）)\"']*)")


@dataclass
class PretrainingDataConfig:
    """create_pretraining_data's settings; the first seven are Google's flags with Google's defaults."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False
    random_seed: int = 12345
    word_segmenter: str | None = None  # whole words of Chinese text from this segmenter ("jieba")
    one_document_per_line: bool = False  # every line is a document (no blank lines between documents)
    split_sentences: bool = False  # cut lines into sentences after 。！？ (a Chinese corpus of paragraphs)
    chunk_documents: int = 1000  # a chunk (the pool of random next segments) ends at this many documents
    chunk_tokens: int = 1_000_000  # ... or at this many tokens
    instances_per_shard: int = 20_000  # a shard buffer of 20k x 128 tokens takes ~50 MB at its flush

    def __post_init__(self):
        if self.max_seq_length < 5:
            raise ConfigError(f"max_seq_length={self.max_seq_length} leaves no room for [CLS] A [SEP] B [SEP] "
                              "with two tokens of text; use at least 5")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ConfigError(f"masked_lm_prob must be between 0 and 1, got {self.masked_lm_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ConfigError(f"short_seq_prob must be between 0 and 1, got {self.short_seq_prob}")
        if self.word_segmenter is not None and not self.do_whole_word_mask:
            raise ConfigError(f"--word_segmenter={self.word_segmenter} only gives the words of whole-word masking; "
                              "add --do_whole_word_mask")
        if self.word_segmenter is not None and self.word_segmenter not in SEGMENTERS:
            raise ConfigError(f"--word_segmenter={self.word_segmenter} is not one of {', '.join(SEGMENTERS)}")
        for name, least in (("max_predictions_per_seq", 1), ("dupe_factor", 1), ("chunk_documents", 2),
                            ("chunk_tokens", 1), ("instances_per_shard", 1)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be at least {least}, got {getattr(self, name)}")


@dataclass
class TrainingInstance:
    """One MLM + NSP example, as token ids."""

    input_ids: list[int]  # [CLS] A [SEP] B [SEP], masks applied
    segment_ids: list[int]
    masked_lm_positions: list[int]  # ascending
    masked_lm_ids: list[int]  # the original tokens at masked_lm_positions
    is_random_next: bool


@dataclass
class Document:
    sentences: list[array]  # token ids of each non-empty sentence
    num_tokens: int
    source: str  # "file:line" of its first sentence
    # With a word segmenter: per sentence, 1 where a token continues the segmenter's word.
    continues: list[array] | None = None


class MaskingVocab:
    """What masking needs from the vocabulary, by id."""

    def __init__(self, vocab: dict[str, int]):
        def special(token: str) -> int:
            if token not in vocab:
                raise ConfigError(f"the vocabulary has no {token} token; use a BERT vocab.txt")
            return vocab[token]

        self.size = max(vocab.values()) + 1
        self.cls_id, self.sep_id, self.mask_id = special("[CLS]"), special("[SEP]"), special("[MASK]")
        by_id = {i: t for t, i in vocab.items()}
        self.replacement_ids = [i for i in sorted(by_id) if not SPECIAL_TOKEN_RE.fullmatch(by_id[i])]
        if not self.replacement_ids:
            raise ConfigError("the vocabulary has only special tokens: nothing to draw random replacements from")
        continuation = [False] * self.size
        for token, i in vocab.items():
            if token.startswith("##"):
                continuation[i] = True
        self.is_continuation = continuation

    @classmethod
    def from_tokenizer(cls, tokenizer) -> MaskingVocab:
        return cls(tokenizer.vocab)


# ---------------------------------------------------------------------------------------------
# Reading the input.


def expand_input_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """A comma-separated list of files and glob patterns (or a list of them), as Google's --input_file."""
    parts = [str(p) for p in spec] if isinstance(spec, (list, tuple)) else str(spec).split(",")
    files: list[Path] = []
    for pattern in (p.strip() for p in parts):
        if not pattern:
            continue
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not matches:
                raise DataError(f"--input_file pattern {pattern} matches no file")
            files += matches
        else:
            path = Path(pattern)
            if not path.is_file():
                raise DataError(f"input file {path} does not exist" if not path.exists()
                                else f"input file {path} is not a file")
            files.append(path)
    if not files:
        raise DataError("no input files given: pass --input_file=FILE[,FILE or glob ...]")
    return files


def split_sentences(line: str) -> list[str]:
    """A line cut after every run of sentence end marks (。！？ full-width and ASCII !?, …) and the
    closing quotes or brackets after it: "好。很好！" -> ["好。", "很好！"]. Other text stays whole."""
    parts = _SENTENCE_END.split(line)
    sentences = ["".join(parts[i:i + 2]).strip() for i in range(0, len(parts), 2)]
    return [sentence for sentence in sentences if sentence]


def load_segmenter(name: str):
    """The word segmenter called `name`: a function from a line to its words (which join to the line)."""
    if name == "jieba":
        try:
            import jieba
        except ImportError:
            raise ConfigError("--word_segmenter=jieba needs jieba: pip install 'bertkit[zh]' (or pip install jieba)") \
                from None
        jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict" lines on every run
        return jieba.lcut
    raise ConfigError(f"--word_segmenter={name} is not one of {', '.join(SEGMENTERS)}")


def segmented_ids(tokenizer, text: str, segmenter) -> tuple[list[int], list[int]]:
    """(token ids of `text`, 1 where a token continues the segmenter's word, else 0).

    A CJK character is a word of its own to BERT's tokenizer; it continues a word when the
    segmenter's word it lies in started before it. Other words keep their `##` pieces (0 here:
    the vocabulary marks those). The ids are the tokenizer's for the whole text.
    """
    words = segmenter(text)
    if "".join(words) != text:
        raise ConfigError("the word segmenter changed the text (its words do not join to the line); use one that "
                          "only cuts it")
    starts, offset = set(), 0
    for word in words:
        starts.add(offset)
        offset += len(word)
    ids: list[int] = []
    continues: list[int] = []
    for word, start, _ in tokenizer.words_with_offsets(text):
        word_ids = tokenizer.text_to_ids(word)
        inside = len(word) == 1 and is_chinese_char(ord(word)) and start not in starts
        ids += word_ids
        continues += [int(inside)] + [0] * (len(word_ids) - 1)
    return ids, continues


def read_documents(files: Iterable[Path], tokenizer, stats: dict | None = None,
                   config: PretrainingDataConfig | None = None, segmenter=None) -> Iterator[Document]:
    """Documents of token ids, one at a time: a blank line (or a new file) ends a document, and
    with config.one_document_per_line every line does; config.split_sentences cuts lines into
    sentences. With a `segmenter`, documents carry which tokens continue a word (`continues`).

    Lines are stripped and tokenized; lines with no tokens are skipped, as are empty documents.
    """
    stats = stats if stats is not None else {}
    config = config or PretrainingDataConfig()
    for path in files:
        sentences: list[array] = []
        continues: list[array] = []
        num_tokens = 0
        first_line = 0

        def document() -> Document:
            stats["documents"] = stats.get("documents", 0) + 1
            return Document(sentences, num_tokens, f"{path}:{first_line}", continues if segmenter else None)

        lines = read_text_lines(path, "a text file, one sentence per line and a blank line between documents")
        for line_number, line in lines:
            line = line.strip()
            if not line:
                if sentences:
                    yield document()
                    sentences, continues, num_tokens = [], [], 0
                continue
            for sentence in split_sentences(line) if config.split_sentences else [line]:
                if segmenter is None:
                    ids, joined = tokenizer.text_to_ids(sentence), None
                else:
                    ids, joined = segmented_ids(tokenizer, sentence, segmenter)
                if ids:
                    if not sentences:
                        first_line = line_number
                    sentences.append(array("i", ids))
                    if joined is not None:
                        continues.append(array("b", joined))
                    num_tokens += len(ids)
                    stats["sentences"] = stats.get("sentences", 0) + 1
                    stats["tokens"] = stats.get("tokens", 0) + len(ids)
            if config.one_document_per_line and sentences:
                yield document()
                sentences, continues, num_tokens = [], [], 0
        if sentences:
            yield document()


def iter_chunks(documents: Iterable[Document], chunk_documents: int, chunk_tokens: int) -> Iterator[list[Document]]:
    """Consecutive documents in chunks of `chunk_documents` documents or `chunk_tokens` tokens.

    A chunk is closed only when at least two more documents follow, so every chunk holds at least
    two documents unless the whole input is a single document.
    """
    source = iter(documents)
    lookahead: list[Document] = []

    def fill(n: int) -> bool:
        while len(lookahead) < n:
            document = next(source, None)
            if document is None:
                return False
            lookahead.append(document)
        return True

    chunk: list[Document] = []
    tokens = 0
    while fill(1):
        document = lookahead.pop(0)
        chunk.append(document)
        tokens += document.num_tokens
        if (len(chunk) >= chunk_documents or tokens >= chunk_tokens) and len(chunk) >= 2 and fill(2):
            yield chunk
            chunk, tokens = [], 0
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------------------------
# Google's instance creation, on token ids.


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_num_tokens: int, rng: random.Random,
                      along_a: list | None = None, along_b: list | None = None) -> None:
    """Google's pre-training truncation: shorten the longer segment (B on ties) from a random end.
    `along_a` / `along_b` (per-token lists of the same lengths) lose the same positions."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        a_longer = len(tokens_a) > len(tokens_b)
        lists = [tokens_a, along_a] if a_longer else [tokens_b, along_b]
        front = rng.random() < 0.5
        for values in lists:
            if values is not None:
                if front:
                    del values[0]
                else:
                    values.pop()


def create_masked_lm_predictions(input_ids: list[int], masked_lm_prob: float, max_predictions_per_seq: int,
                                 vocab: MaskingVocab, rng: random.Random, do_whole_word_mask: bool = False,
                                 continues: Sequence[int] | None = None) -> tuple[list[int], list[int], list[int]]:
    """(masked input_ids, masked_lm_positions ascending, original ids there), Google's algorithm.
    `continues` (per position, from a word segmenter) marks more tokens that join the word before
    them under whole-word masking: the later characters of a Chinese word."""
    cand_indexes: list[list[int]] = []
    for i, token in enumerate(input_ids):
        if token == vocab.cls_id or token == vocab.sep_id:
            continue
        if do_whole_word_mask and cand_indexes and (vocab.is_continuation[token] or (continues and continues[i])):
            cand_indexes[-1].append(i)  # a ##piece (or a word's next character) joins the word before it
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)

    output = list(input_ids)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(input_ids) * masked_lm_prob))))
    replacements = vocab.replacement_ids
    masked: list[tuple[int, int]] = []
    for index_set in cand_indexes:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(index_set) > num_to_predict:
            continue  # a whole word that does not fit is skipped
        for index in index_set:
            if rng.random() < 0.8:
                new_token = vocab.mask_id  # 80%: [MASK]
            elif rng.random() < 0.5:
                new_token = input_ids[index]  # 10%: the token itself
            else:
                new_token = replacements[rng.randint(0, len(replacements) - 1)]  # 10%: a random token
            output[index] = new_token
            masked.append((index, input_ids[index]))
    masked.sort()
    return output, [i for i, _ in masked], [label for _, label in masked]


def create_instances_from_document(documents: Sequence[Document], document_index: int,
                                   config: PretrainingDataConfig, vocab: MaskingVocab,
                                   rng: random.Random) -> list[TrainingInstance]:
    """Google's create_instances_from_document; the random next segment comes from another document."""
    document = documents[document_index].sentences
    joins = documents[document_index].continues  # per sentence, with a word segmenter
    segmented = joins is not None
    max_num_tokens = config.max_seq_length - 3  # [CLS], [SEP], [SEP]
    target_seq_length = max_num_tokens
    if rng.random() < config.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances = []
    current_chunk: list[array] = []
    current_joins: list[array] = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        if segmented:
            current_joins.append(joins[i])
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a: list[int] = []
                joins_a: list[int] | None = [] if segmented else None
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])
                    if segmented:
                        joins_a.extend(current_joins[j])
                tokens_b: list[int] = []
                joins_b: list[int] | None = [] if segmented else None
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    if len(documents) < 2:
                        raise DataError(f"the document at {documents[document_index].source} is the only one: the "
                                        "random next sentence must come from a different document")
                    other = rng.randint(0, len(documents) - 2)
                    if other >= document_index:
                        other += 1  # any document but this one, in one draw
                    random_document = documents[other].sentences
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if segmented:
                            joins_b.extend(documents[other].continues[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    # The segments not used go back, so they are not wasted.
                    i -= len(current_chunk) - a_end
                else:
                    is_random_next = False
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                        if segmented:
                            joins_b.extend(current_joins[j])
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng, joins_a, joins_b)
                assert tokens_a and tokens_b

                input_ids = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                continues = [0, *joins_a, 0, *joins_b, 0] if segmented else None
                input_ids, positions, labels = create_masked_lm_predictions(
                    input_ids, config.masked_lm_prob, config.max_predictions_per_seq, vocab, rng,
                    config.do_whole_word_mask, continues)
                instances.append(TrainingInstance(input_ids, segment_ids, positions, labels, is_random_next))
            current_chunk = []
            current_joins = []
            current_length = 0
        i += 1
    return instances


def create_instances_from_chunk(documents: list[Document], config: PretrainingDataConfig, vocab: MaskingVocab,
                                rng: random.Random) -> Iterator[TrainingInstance]:
    """Google's create_training_instances on one chunk of documents (shuffled in place)."""
    rng.shuffle(documents)
    for _ in range(config.dupe_factor):
        for document_index in range(len(documents)):
            yield from create_instances_from_document(documents, document_index, config, vocab, rng)


def warn_if_chinese(documents: Sequence[Document], tokenizer) -> None:
    """Whole-word masking without a segmenter masks single characters of Chinese text: say so when
    most of the tokens (of the first chunk) are CJK characters."""
    ids = [i for document in documents for sentence in document.sentences for i in sentence]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    chinese = sum(len(token) == 1 and is_chinese_char(ord(token)) for token in tokens)
    if ids and chinese > 0.3 * len(ids):
        logger.warning("%.0f%% of the tokens are Chinese characters, each a word of its own to BERT's tokenizer: "
                       "--do_whole_word_mask masks single characters; for Chinese whole-word masking add "
                       "--word_segmenter=jieba (pip install 'bertkit[zh]')", 100 * chinese / len(ids))


def iter_training_instances(files: Sequence[Path], tokenizer, config: PretrainingDataConfig,
                            stats: dict | None = None, segmenter=None) -> Iterator[TrainingInstance]:
    """Every instance of the corpus, chunk after chunk, holding one chunk of documents at a time.
    `segmenter`: a callable cutting a line into words (default: config.word_segmenter's, if any)."""
    stats = stats if stats is not None else {}
    vocab = MaskingVocab.from_tokenizer(tokenizer)
    if segmenter is None and config.word_segmenter is not None:
        segmenter = load_segmenter(config.word_segmenter)
    documents = read_documents(files, tokenizer, stats, config, segmenter)
    chunks = iter_chunks(documents, config.chunk_documents, config.chunk_tokens)
    for chunk_index, chunk in enumerate(chunks):
        if chunk_index == 0 and config.do_whole_word_mask and segmenter is None:
            warn_if_chinese(chunk, tokenizer)
        if len(chunk) < 2:
            raise DataError(f"{', '.join(map(str, files))}: the input holds a single document (from "
                            f"{chunk[0].source}); next-sentence prediction draws its random next sentence from a "
                            "different document: separate the documents with blank lines, or add more")
        stats["chunks"] = chunk_index + 1
        rng = random.Random(f"{config.random_seed}:{chunk_index}")
        yield from create_instances_from_chunk(chunk, config, vocab, rng)


# ---------------------------------------------------------------------------------------------
# Writing shards.


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


class ShardWriter:
    """Collects instances as compact arrays and writes a shard every `instances_per_shard` of them."""

    def __init__(self, output_dir: Path, instances_per_shard: int, seed: int):
        self.output_dir = Path(output_dir)
        self.instances_per_shard = instances_per_shard
        self.seed = seed
        self.shards: list[dict] = []
        self._reset()

    def _reset(self) -> None:
        self.input_ids, self.segment_ids = array("i"), array("b")
        self.positions, self.labels = array("i"), array("i")
        self.lengths, self.num_masked, self.random_next = array("q"), array("q"), array("b")

    def add(self, instance: TrainingInstance) -> None:
        self.input_ids.extend(instance.input_ids)
        self.segment_ids.extend(instance.segment_ids)
        self.positions.extend(instance.masked_lm_positions)
        self.labels.extend(instance.masked_lm_ids)
        self.lengths.append(len(instance.input_ids))
        self.num_masked.append(len(instance.masked_lm_positions))
        self.random_next.append(int(instance.is_random_next))
        if len(self.lengths) >= self.instances_per_shard:
            self.flush()

    def flush(self) -> None:
        n = len(self.lengths)
        if n == 0:
            return
        index = len(self.shards)
        order = np.random.default_rng([self.seed, index]).permutation(n)  # shuffle within the shard
        lengths = np.frombuffer(self.lengths, dtype=np.int64)
        num_masked = np.frombuffer(self.num_masked, dtype=np.int64)
        tokens, token_offsets = _reorder(lengths, order)
        masked, masked_offsets = _reorder(num_masked, order)
        arrays = {
            "input_ids": np.frombuffer(self.input_ids, dtype=np.int32)[tokens],
            "segment_ids": np.frombuffer(self.segment_ids, dtype=np.int8)[tokens],
            "offsets": token_offsets,
            "masked_lm_positions": np.frombuffer(self.positions, dtype=np.int32)[masked],
            "masked_lm_ids": np.frombuffer(self.labels, dtype=np.int32)[masked],
            "masked_lm_offsets": masked_offsets,
            "next_sentence_labels": np.frombuffer(self.random_next, dtype=np.int8)[order],
        }
        name = shard_name(index)
        final = self.output_dir / name
        with atomic_directory(final) as tmp:
            for key, values in arrays.items():
                with atomic_write(tmp / f"{key}.npy", "wb") as handle:
                    np.save(handle, values.astype(SHARD_ARRAYS[key], copy=False))
        self.shards.append({"name": name, "num_instances": n, "num_tokens": int(lengths.sum()),
                            "num_masked_lm": int(num_masked.sum()),
                            "num_random_next": int(arrays["next_sentence_labels"].sum())})
        logger.info("wrote %s: %d instances", final, n)
        self._reset()


def _reorder(lengths: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices that put variable-length rows into `order`, and the new offsets."""
    starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    new_lengths = lengths[order]
    offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    gather = np.repeat(starts[order] - offsets[:-1], new_lengths) + np.arange(offsets[-1])
    return gather, offsets


def vocab_fingerprint(vocab: dict[str, int]) -> str:
    """sha256 of the vocabulary's tokens in id order: the same for two vocab.txt files with the same
    entries, whatever their line ends or final newline."""
    by_id = sorted((i, t) for t, i in vocab.items())
    return hashlib.sha256("\n".join(t for _, t in by_id).encode("utf-8")).hexdigest()


def create_pretraining_data(input_files, output_dir: str | os.PathLike, tokenizer,
                            config: PretrainingDataConfig | None = None, segmenter=None) -> dict:
    """Google's create_pretraining_data, streamed into shards under `output_dir`; returns the index.

    `input_files`: a comma-separated string of files and globs, or a list of paths.
    `segmenter`: a callable cutting a line into words for Chinese whole-word masking (default:
    the one config.word_segmenter names).
    """
    config = config or PretrainingDataConfig()
    if segmenter is None and config.word_segmenter is not None:
        segmenter = load_segmenter(config.word_segmenter)  # a missing package fails before any output
    files = expand_input_files(input_files)
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_shards(files, output_dir, tokenizer, config, segmenter)
    except BaseException:
        # The input is streamed, so a bad line can surface after the folder was made: a folder this
        # run created is removed again rather than left behind empty or half-filled.
        if created:
            shutil.rmtree(output_dir, ignore_errors=True)
        raise


def _write_shards(files: list[Path], output_dir: Path, tokenizer, config: PretrainingDataConfig, segmenter) -> dict:
    index_path = output_dir / INDEX_NAME
    if index_path.exists():
        index_path.unlink()  # the shards already there stop being a valid set now
    for stale in output_dir.glob(f".{SHARD_PREFIX}*.tmp"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    for path in files:
        logger.info("reading %s", path)

    stats: dict = {}
    writer = ShardWriter(output_dir, config.instances_per_shard, config.random_seed)
    for instance in iter_training_instances(files, tokenizer, config, stats, segmenter):
        writer.add(instance)
    writer.flush()
    if not writer.shards:
        raise DataError(f"{', '.join(map(str, files))}: no sentences found; the input must be text, one sentence "
                        "per line, with blank lines between documents")
    shards = writer.shards
    for path in output_dir.glob(f"{SHARD_PREFIX}*"):  # higher-numbered shards of an earlier, bigger run
        match = re.fullmatch(rf"{SHARD_PREFIX}(\d{{5}})", path.name)
        if match and int(match.group(1)) >= len(shards) and path.is_dir():
            shutil.rmtree(path)

    vocab_file = Path(tokenizer.vocab_file).resolve()
    index = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "num_instances": sum(s["num_instances"] for s in shards),
        "num_tokens": sum(s["num_tokens"] for s in shards),
        "num_masked_lm": sum(s["num_masked_lm"] for s in shards),
        "num_random_next": sum(s["num_random_next"] for s in shards),
        "num_documents": stats.get("documents", 0),
        "num_sentences": stats.get("sentences", 0),
        "num_corpus_tokens": stats.get("tokens", 0),
        "num_chunks": stats.get("chunks", 0),
        "settings": {**asdict(config), "do_lower_case": tokenizer.do_lower_case},
        "vocab": {"file": str(vocab_file), "size": len(tokenizer), "fingerprint": vocab_fingerprint(tokenizer.vocab)},
        "input_files": [str(p) for p in files],
        "shards": shards,
    }
    with atomic_write(index_path) as handle:
        json.dump(index, handle, indent=2)
        handle.write("\n")
    logger.info("wrote %d instances in %d shard(s) to %s (%d documents, %d sentences)", index["num_instances"],
                len(shards), output_dir, index["num_documents"], index["num_sentences"])
    return index


# ---------------------------------------------------------------------------------------------
# Reading shards.


def load_index(path: str | os.PathLike) -> tuple[Path, dict]:
    """(directory, index) of a create_pretraining_data output: its folder or its index.json."""
    path = Path(path)
    index_path = path if path.name == INDEX_NAME else path / INDEX_NAME
    if not index_path.is_file():
        if not path.exists():
            raise DataError(f"pre-training data {path} does not exist; create it with bertkit create_pretraining_data")
        raise DataError(f"{index_path} is missing: {index_path.parent} is not the output of bertkit "
                        "create_pretraining_data, or that run was interrupted; run it again")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{index_path} is not valid JSON ({err}); run bertkit create_pretraining_data again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
        raise DataError(f"{index_path} is not a bertkit pre-training index (no \"format\": \"{FORMAT_NAME}\")")
    if index.get("version") != FORMAT_VERSION:
        raise DataError(f"{index_path} has format version {index.get('version')}, this bertkit reads version "
                        f"{FORMAT_VERSION}; run bertkit create_pretraining_data again")
    try:
        fields = [(f"shards[{i}].num_instances", shard["num_instances"], 0) for i, shard in enumerate(index["shards"])]
        fields += [("settings.max_seq_length", index["settings"]["max_seq_length"], 1),
                   ("settings.max_predictions_per_seq", index["settings"]["max_predictions_per_seq"], 0),
                   ("vocab.size", index["vocab"]["size"], 1)]
        names = [shard["name"] for shard in index["shards"]]
        vocab_file, fingerprint = index["vocab"]["file"], index["vocab"].get("fingerprint")
    except (KeyError, TypeError, IndexError) as err:
        raise DataError(f"{index_path} is missing a field ({err}); run bertkit create_pretraining_data again") from None
    for key, value, least in fields:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise DataError(f"{index_path}: {key} must be an integer of at least {least}, got {value!r}; the index is "
                            "damaged: run bertkit create_pretraining_data again")
    # Shard names are folders beside index.json, never paths that lead elsewhere.
    for key, value in [*((f"shards[{i}].name", name) for i, name in enumerate(names)),
                       ("vocab.file", vocab_file), ("vocab.fingerprint", fingerprint or "")]:
        if not isinstance(value, str) or (key.startswith("shards") and not re.fullmatch(rf"{SHARD_PREFIX}\d+", value)):
            raise DataError(f"{index_path}: {key} is {value!r}, not what create_pretraining_data writes; the index is "
                            "damaged: run bertkit create_pretraining_data again")
    return index_path.parent, index


def expand_shard_dirs(spec: str | os.PathLike | Sequence) -> list[Path]:
    """A comma-separated list (or a list) of create_pretraining_data output folders, globs allowed."""
    parts = [str(p) for p in spec] if isinstance(spec, (list, tuple)) else str(spec).split(",")
    found: list[Path] = []
    for pattern in (p.strip() for p in parts):
        if not pattern:
            continue
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise DataError(f"pre-training data pattern {pattern} matches nothing")
            found += matches
        else:
            found.append(Path(pattern))
    if not found:
        raise DataError("no pre-training data given: pass --input_file=DIR (the output of create_pretraining_data)")
    return found


@dataclass
class _Shard:
    directory: Path
    num_instances: int
    vocab_size: int  # the bounds its index promises, checked when the shard is opened
    max_seq_length: int
    max_predictions_per_seq: int
    arrays: dict = field(default_factory=dict)


class PretrainingDataset(Dataset):
    """The instances of one or more create_pretraining_data outputs, memory-mapped.

    An item is a dict of plain lists ready for PaddingCollator: input_ids, attention_mask,
    token_type_ids, masked_lm_positions, labels (the original ids at those positions) and
    next_sentence_label; BertForPreTraining takes it as it is. `limit` keeps the first N instances
    (Google's --max_eval_steps evaluates the first batches of the input).
    """

    def __init__(self, paths, limit: int | None = None):
        self.indexes: list[tuple[Path, dict]] = [load_index(p) for p in expand_shard_dirs(paths)]
        hashes = {index["vocab"].get("fingerprint") for _, index in self.indexes}
        if len(hashes) > 1:
            raise DataError("the pre-training data sets " + ", ".join(str(d) for d, _ in self.indexes) +
                            " were built with different vocabularies; build them all with the same vocab.txt")
        self.shards = [_Shard(directory / shard["name"], shard["num_instances"], index["vocab"]["size"],
                              index["settings"]["max_seq_length"], index["settings"]["max_predictions_per_seq"])
                       for directory, index in self.indexes for shard in index["shards"]]
        self.max_seq_length = max(index["settings"]["max_seq_length"] for _, index in self.indexes)
        self.max_predictions_per_seq = max(index["settings"]["max_predictions_per_seq"] for _, index in self.indexes)
        self.vocab_size = max(index["vocab"]["size"] for _, index in self.indexes)
        self.vocab_fingerprint = hashes.pop()
        self._starts = np.cumsum([0] + [s.num_instances for s in self.shards])
        total = int(self._starts[-1])
        self._length = total if limit is None else min(total, max(0, int(limit)))
        if self._length == 0:
            raise DataError(f"the pre-training data {', '.join(str(d) for d, _ in self.indexes)} holds no instances")
        self._lengths: np.ndarray | None = None

    def __getstate__(self):  # DataLoader workers map the files again instead of pickling them
        state = self.__dict__.copy()
        state["shards"] = [replace(s, arrays={}) for s in self.shards]
        return state

    def _arrays(self, shard: _Shard) -> dict:
        if not shard.arrays:
            arrays = {}
            for name, dtype in SHARD_ARRAYS.items():
                path = shard.directory / f"{name}.npy"
                try:
                    values = np.load(path, mmap_mode="r", allow_pickle=False)
                except FileNotFoundError:
                    raise DataError(f"{path} is missing; run bertkit create_pretraining_data again") from None
                except Exception as err:  # noqa: BLE001 - np.load reads nothing but this file (a damaged header
                    # is a SyntaxError or tokenize's TokenError there), so any failure is the file's
                    raise DataError(f"{path} is not a readable .npy array ({type(err).__name__}: "
                                    f"{str(err).splitlines()[0] if str(err) else ''}); run bertkit "
                                    "create_pretraining_data again") from None
                if values.dtype != dtype or values.ndim != 1:
                    raise DataError(f"{path} holds {values.dtype} of shape {values.shape}, expected a flat "
                                    f"{np.dtype(dtype)} array")
                arrays[name] = values
            _check_shard(shard, arrays)
            shard.arrays = arrays
        return shard.arrays

    def __len__(self) -> int:
        return self._length

    def locate(self, index: int) -> tuple[_Shard, int]:
        if not 0 <= index < self._length:
            raise IndexError(f"instance {index} is out of range for {self._length} instances")
        number = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.shards[number], index - int(self._starts[number])

    def __getitem__(self, index: int) -> dict:
        shard, row = self.locate(int(index))
        a = self._arrays(shard)
        start, end = int(a["offsets"][row]), int(a["offsets"][row + 1])
        m_start, m_end = int(a["masked_lm_offsets"][row]), int(a["masked_lm_offsets"][row + 1])
        return {
            "input_ids": a["input_ids"][start:end].tolist(),
            "attention_mask": [1] * (end - start),
            "token_type_ids": a["segment_ids"][start:end].tolist(),
            "masked_lm_positions": a["masked_lm_positions"][m_start:m_end].tolist(),
            "labels": a["masked_lm_ids"][m_start:m_end].tolist(),
            "next_sentence_label": int(a["next_sentence_labels"][row]),
        }

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per instance (for length-grouped batching), read from the offsets only."""
        if self._lengths is None:
            parts, remaining = [], self._length
            for shard in self.shards:
                if remaining <= 0:
                    break
                lengths = np.diff(self._arrays(shard)["offsets"])[:remaining]
                parts.append(lengths)
                remaining -= len(lengths)
            self._lengths = np.concatenate(parts)
        return self._lengths

    def max_token_id(self) -> int:
        """The largest token id in the data (input and labels), to check it against a model's vocab_size."""
        largest = 0
        for shard in self.shards:
            a = self._arrays(shard)
            for name in ("input_ids", "masked_lm_ids"):
                if len(a[name]):
                    largest = max(largest, int(a[name].max()))
        return largest


def _check_shard(shard: _Shard, arrays: dict) -> None:
    """Check a whole shard at once, with numpy over its arrays, when it is opened: a bad id or position
    would otherwise fail deep in a training step, or never show when its row is not drawn."""
    n = shard.num_instances

    def fail(name: str, problem: str) -> None:
        raise DataError(f"{shard.directory / name}.npy: {problem}; the shard is damaged or from another run: run "
                        "bertkit create_pretraining_data again")

    for name, size in (("offsets", n + 1), ("masked_lm_offsets", n + 1), ("next_sentence_labels", n)):
        if len(arrays[name]) != size:
            fail(name, f"does not hold the {n} instances index.json lists ({len(arrays[name])} values, not {size})")
    tokens = np.diff(arrays["offsets"])
    masked = np.diff(arrays["masked_lm_offsets"])
    for name, counts, values, low, high in (
            ("offsets", tokens, "input_ids", 1, shard.max_seq_length),
            ("masked_lm_offsets", masked, "masked_lm_positions", 0, shard.max_predictions_per_seq)):
        if arrays[name][0] != 0 or arrays[name][-1] != len(arrays[values]):
            fail(name, f"runs from {arrays[name][0]} to {arrays[name][-1]}, not from 0 to the "
                       f"{len(arrays[values])} values of {values}")
        bad = np.flatnonzero((counts < low) | (counts > high))
        if len(bad):
            fail(name, f"row {bad[0]} has {counts[bad[0]]} {values}, not {low} to {high} as index.json promises")
    if len(arrays["segment_ids"]) != len(arrays["input_ids"]):
        fail("segment_ids", f"holds {len(arrays['segment_ids'])} values for {len(arrays['input_ids'])} input_ids")
    if len(arrays["masked_lm_ids"]) != len(arrays["masked_lm_positions"]):
        fail("masked_lm_ids", f"holds {len(arrays['masked_lm_ids'])} values for "
                              f"{len(arrays['masked_lm_positions'])} masked_lm_positions")

    def first_outside(name: str, values: np.ndarray, low, high, offsets: np.ndarray, what: str) -> None:
        """The row of the first value outside [low, high) (high may be per value), if any."""
        bad = np.flatnonzero((values < low) | (values >= high))
        if len(bad):
            row = int(np.searchsorted(offsets, bad[0], side="right")) - 1
            limit = high[bad[0]] if isinstance(high, np.ndarray) else high
            fail(name, f"row {row} holds {values[bad[0]]}, outside [{low}, {limit}) ({what})")

    vocab = f"the vocabulary's {shard.vocab_size} ids"
    first_outside("input_ids", arrays["input_ids"], 0, shard.vocab_size, arrays["offsets"], vocab)
    first_outside("masked_lm_ids", arrays["masked_lm_ids"], 0, shard.vocab_size, arrays["masked_lm_offsets"], vocab)
    first_outside("segment_ids", arrays["segment_ids"], 0, 2, arrays["offsets"], "segment ids are 0 or 1")
    first_outside("next_sentence_labels", arrays["next_sentence_labels"], 0, 2, np.arange(n + 1),
                  "next sentence labels are 0 or 1")
    row_lengths = np.repeat(tokens, masked)  # the length of the row of every masked position
    first_outside("masked_lm_positions", arrays["masked_lm_positions"], 0, row_lengths,
                  arrays["masked_lm_offsets"], "positions lie within their row's tokens")
