"""WordPiece tokenization with the semantics of Google's BERT `tokenization.py`.

The pipeline is Google's: clean the text (drop NUL, U+FFFD and control characters, turn
whitespace into spaces), put spaces around CJK ideographs, split on whitespace, then per word
lower-case and strip accents (uncased models only), split off punctuation, and finally run
greedy longest-match-first WordPiece against the vocabulary.

One step is not Google's: the text is NFC-normalised before the whitespace split, as
transformers' `BertTokenizerLegacy` (our parity reference) does. It only matters for text
that is not already NFC, mostly with cased vocabularies: "e" + U+0301 becomes the single
vocabulary entry "é" instead of "e" followed by an unknown combining mark.

Everything after the whitespace split depends on the word alone, so FullTokenizer caches the
word pieces (and their ids) of every whitespace-separated word it has seen. Together with a
fast path that lets ASCII text skip the per-character cleaning, that is what makes this pure
Python tokenizer outrun transformers' Rust one on bench/bench_tokenizer.py: text is cleaned,
split and looked up by C code (str.translate, str.split, dict lookups), and the Python-level
work runs once per distinct word.
"""

from __future__ import annotations

import json
import re
import unicodedata
from itertools import chain
from pathlib import Path

from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_write

VOCAB_NAME = "vocab.txt"
CONFIG_NAME = "tokenizer_config.json"

# Google treats every non-alphanumeric printable ASCII character as punctuation, including
# symbols like "$", "^" and "`" that Unicode does not put in a P* category.
_ASCII_PUNCTUATION = r"!-/:-@\[-`{-~"
_ASCII_PUNCTUATION_SPLIT_RE = re.compile(f"[{_ASCII_PUNCTUATION}]|[^{_ASCII_PUNCTUATION}]+")
# The special tokens that `FullTokenizer(keep_special_tokens=True)` recognises in raw text.
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]")
# ASCII control characters that _clean_text deletes. They glue their neighbours together
# ("a\x0bb" -> "ab"), whereas str.split() would split there, so ASCII text holding any of them
# must take the full cleaning path.
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def load_vocab(vocab_file):
    """Loads a vocabulary file (one token per line, id = line number) into a dict.

    Lines are split on "\\n" only (with universal newlines, so "\\r\\n" files read the same).
    str.splitlines() would also split on U+2028, which bert-base-chinese has as a token, and
    shift every later id. Google strips each line with str.strip(); that turns the Chinese
    vocab's "\\u2028" and "##\\u2028" entries into "" and "##". We keep them verbatim, as
    transformers does. Ids are the same either way, and no word can be tokenized into either
    entry, because U+2028 is whitespace to the splitting.

    A file that is not UTF-8 text, or that repeats a token, is a ConfigError naming the line: a
    repeated token would leave an id unused, so that the vocabulary's size (its distinct tokens)
    understates its highest id and a model of that size is indexed past its embeddings.
    """
    with open(vocab_file, encoding="utf-8") as reader:
        try:
            text = reader.read()
        except UnicodeDecodeError as err:
            raise ConfigError(f"{vocab_file}:{_line_of_offset(vocab_file, err.start)}: not UTF-8 text; a vocab.txt "
                              "holds one token per line (is this a binary file?)") from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise ConfigError(f"{vocab_file}:{line}: holds a NUL byte; a vocab.txt is text, one token per line (is this a "
                          "binary file?)")
    tokens = text.split("\n")
    if tokens[-1] == "":
        tokens.pop()  # the file's final newline ends the last line; it does not start a token
    vocab = {}
    for index, token in enumerate(tokens):
        if token in vocab:
            raise ConfigError(f"{vocab_file}:{index + 1}: the token {token!r} repeats line {vocab[token] + 1}; "
                              "every line must hold a different token: remove the repeated line")
        vocab[token] = index
    return vocab


def _line_of_offset(path, offset):
    """The 1-based line holding byte `offset` of the file."""
    with open(path, "rb") as reader:
        return reader.read(offset).count(b"\n") + 1


def whitespace_tokenize(text):
    """Runs basic whitespace cleaning and splitting on a piece of text."""
    return text.split()


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """Truncates a sequence pair in place to at most `max_length` tokens in total.

    Google's rule: always shorten the longer sequence by one token from its end, and the
    second one when both are equally long. A token removed from a short sequence costs more
    information than one removed from a long one.
    """
    while True:
        total_length = len(tokens_a) + len(tokens_b)
        if total_length <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def truncate_for_packing(tokens_a, tokens_b, max_seq_length):
    """Cut a sequence (or pair) in place so that it fits max_seq_length with its [CLS]/[SEP]s:
    a single sequence keeps its first max_seq_length - 2 tokens, a pair is cut by Google's rule
    (truncate_seq_pair) to max_seq_length - 3. Returns how many tokens were removed."""
    before = len(tokens_a) + len(tokens_b or ())
    if tokens_b is None:
        del tokens_a[max(0, max_seq_length - 2):]
    else:
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    return before - len(tokens_a) - len(tokens_b or ())


# Above this share of [UNK] words the vocabulary does not cover the text's language or script: the
# model sees mostly one token and answers with confident nonsense (Chinese through an English vocab).
UNKNOWN_WORDS_WARNING_SHARE = 0.05


def unknown_words_message(unknown, words, vocab_file, what):
    """The warning for text the vocabulary does not cover, or None when the share is below the threshold."""
    if not words or unknown / words <= UNKNOWN_WORDS_WARNING_SHARE:
        return None
    return (f"{unknown / words:.0%} of the words in {what} ({unknown} of {words}) map to [UNK] in {vocab_file}: "
            "the model's vocabulary does not cover this text's language or script, and its answers will be "
            "noise; use a model whose vocab.txt covers it (e.g. bert-base-chinese or bert-base-multilingual-cased "
            "by name, or a vocabulary of your own from `bertkit build_vocab`)")


def pack(tokens_a, tokens_b, cls, sep):
    """The one place that builds BERT's input: [CLS] a [SEP] (b [SEP]) and its segment ids
    (0 up to and including the first [SEP], 1 after it). Works on tokens or on ids alike."""
    tokens = [cls, *tokens_a, sep]
    segment_ids = [0] * len(tokens)
    if tokens_b is not None:
        tokens += [*tokens_b, sep]
        segment_ids += [1] * (len(tokens_b) + 1)
    return tokens, segment_ids


def input_lists(tokenizer, tokens, segment_ids, pad_to=None):
    """Packed tokens -> (input_ids, input_mask, segment_ids) as Google's features hold them: the mask
    is 1 for real tokens and 0 for padding (only real tokens are attended to), and with `pad_to`
    all three are zero-padded to that length (Google's static shapes)."""
    input_ids = list(tokenizer.convert_tokens_to_ids(tokens))
    input_mask = [1] * len(input_ids)
    segment_ids = list(segment_ids)
    if pad_to is not None:
        padding = [0] * (pad_to - len(input_ids))
        input_ids, input_mask, segment_ids = input_ids + padding, input_mask + padding, segment_ids + padding
    return input_ids, input_mask, segment_ids


def _is_whitespace(char):
    """Checks whether `char` is a whitespace character."""
    # \t, \n, and \r are technically control characters but we treat them as whitespace.
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    """Checks whether `char` is a control character (any C* category)."""
    # \t, \n and \r are C* too, but they separate words, so they count as whitespace.
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_punctuation(char):
    """Checks whether `char` is a punctuation character."""
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(cp):
    """Checks whether `cp` is the code point of a CJK ideograph.

    "Chinese character" means the CJK Unified Ideographs blocks. Despite the name these are
    not all Japanese and Korean characters: Hangul, Hiragana and Katakana write
    space-separated words and are handled like every other script.
    """
    return (
        (0x4E00 <= cp <= 0x9FFF)
        or (0x3400 <= cp <= 0x4DBF)
        or (0x20000 <= cp <= 0x2A6DF)
        or (0x2A700 <= cp <= 0x2B73F)
        or (0x2B740 <= cp <= 0x2B81F)
        or (0x2B820 <= cp <= 0x2CEAF)
        or (0xF900 <= cp <= 0xFAFF)
        or (0x2F800 <= cp <= 0x2FA1F)
    )


class _CleanTable(dict):
    """A str.translate table doing Google's _clean_text and _tokenize_chinese_chars at once.

    The two passes are per character and independent (a CJK ideograph is neither a control
    nor whitespace), so one translate does both in C. Entries are computed on first sight of a
    code point, because precomputing all 1.1M code points would cost a second at import.
    """

    def __init__(self, tokenize_chinese_chars):
        super().__init__()
        self.tokenize_chinese_chars = tokenize_chinese_chars

    def __missing__(self, cp):
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            out = None  # deleted
        elif _is_whitespace(char):
            out = " "
        elif self.tokenize_chinese_chars and is_chinese_char(cp):
            out = f" {char} "
        else:
            out = cp  # unchanged
        self[cp] = out
        return out


class BasicTokenizer:
    """Runs basic tokenization (invalid character removal, punctuation splitting, lower casing)."""

    def __init__(self, do_lower_case=True, tokenize_chinese_chars=True):
        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self._clean_table = _CleanTable(tokenize_chinese_chars)

    def tokenize(self, text):
        """Tokenizes a piece of text into words and punctuation marks."""
        return [token for word in self.split_words(text) for token in self.tokenize_word(word)]

    def split_words(self, text):
        """Cleans `text` and splits it on whitespace: the part of tokenize that needs context."""
        # Pure ASCII without control characters is unchanged by cleaning (\t, \n and \r only
        # turn into spaces, which str.split treats alike), has no CJK and is already NFC.
        if not text.isascii() or _ASCII_CONTROL_RE.search(text):
            text = unicodedata.normalize("NFC", text.translate(self._clean_table))
        return text.split()

    def tokenize_word(self, word):
        """Lower-cases, strips accents and splits punctuation off one whitespace-free word."""
        if self.do_lower_case:
            word = word.lower()
            if not word.isascii():
                word = self._run_strip_accents(word)
        return self._run_split_on_punc(word)

    def _run_strip_accents(self, text):
        """Strips accents from a piece of text."""
        text = unicodedata.normalize("NFD", text)
        return "".join(char for char in text if unicodedata.category(char) != "Mn")

    def _run_split_on_punc(self, text):
        """Splits punctuation on a piece of text: every punctuation mark becomes its own token."""
        if text.isascii():
            return _ASCII_PUNCTUATION_SPLIT_RE.findall(text)
        output = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append(char)
                start_new_word = True
            elif start_new_word:
                output.append(char)
                start_new_word = False
            else:
                output[-1] += char
        return output


class WordpieceTokenizer:
    """Runs WordPiece tokenization."""

    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        # No candidate longer than the longest vocabulary entry can match, so the greedy search
        # starts there instead of at the end of the word.
        self._max_piece_chars = max(map(len, vocab), default=0)

    def tokenize(self, text: str) -> list[str]:
        """Tokenizes a piece of text into its word pieces.

        This uses a greedy longest-match-first algorithm to perform tokenization using the
        given vocabulary. For example, "unaffable" becomes ["un", "##aff", "##able"].

        Args:
          text: A single token or whitespace separated tokens. This should have already been
            passed through `BasicTokenizer`.

        Returns:
          A list of wordpiece tokens.
        """
        output_tokens = []
        for token in whitespace_tokenize(text):
            output_tokens.extend(self.tokenize_word(token))
        return output_tokens

    def tokenize_word(self, token):
        """Word pieces of one whitespace-free token; [UNK] alone if any part cannot be matched."""
        if len(token) > self.max_input_chars_per_word:
            return [self.unk_token]
        sub_tokens = []
        start = 0
        while start < len(token):
            end = min(len(token), start + self._max_piece_chars)
            cur_substr = None
            while start < end:
                substr = token[start:end]
                if start > 0:
                    substr = "##" + substr
                if substr in self.vocab:
                    cur_substr = substr
                    break
                end -= 1
            if cur_substr is None:
                return [self.unk_token]
            sub_tokens.append(cur_substr)
            start = end
        return sub_tokens


class _WordCache(dict):
    """word -> tuple of word pieces (or ids), computed by `compute` on a miss.

    A dict subclass so that hits go through dict.__getitem__ in C, also when mapped over a
    whole sentence. It is emptied when full: a corpus with a long tail of rare words would
    otherwise grow it without bound, and the frequent words come back within a few sentences.
    """

    def __init__(self, compute, max_words=1 << 18):
        super().__init__()
        self.compute = compute
        self.max_words = max_words

    def __missing__(self, word):
        if len(self) >= self.max_words:
            self.clear()
        value = self[word] = tuple(self.compute(word))
        return value


class FullTokenizer:
    """Runs end-to-end tokenization: basic tokenization followed by WordPiece, and encoding.

    Results are cached per word, so the vocabulary and the options are fixed after construction.
    """

    def __init__(self, vocab_file, do_lower_case=True, tokenize_chinese_chars=True, keep_special_tokens=False):
        """`keep_special_tokens=True` reads "[MASK]" (and the other SPECIAL_TOKENS in the vocabulary)
        written in raw text as that one token, as users of fill-mask expect. The default is Google's
        behaviour, which splits "[MASK]" like any other word ("[", "mask", "]"): training data must
        not be able to smuggle control tokens in."""
        self.vocab_file = str(vocab_file)
        self.vocab = load_vocab(vocab_file)
        if "[UNK]" not in self.vocab:
            raise ConfigError(f"{vocab_file}: has no [UNK] line, the token of every word WordPiece cannot split; "
                              "use the vocab.txt that belongs to the model")
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case, tokenize_chinese_chars=tokenize_chinese_chars)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
        self.keep_special_tokens = keep_special_tokens
        specials = [t for t in SPECIAL_TOKENS if t in self.vocab]
        self._special_re = re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None
        self._init_caches()

    def _init_caches(self):
        self._word_tokens = _WordCache(self._wordpieces)
        self._word_ids = _WordCache(lambda word: [self.vocab[piece] for piece in self._wordpieces(word)])

    def __getstate__(self):
        # Pickled into DataLoader workers: the caches are big and cheap to refill.
        state = self.__dict__.copy()
        del state["_word_tokens"], state["_word_ids"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_caches()

    @property
    def do_lower_case(self):
        return self.basic_tokenizer.do_lower_case

    @property
    def tokenize_chinese_chars(self):
        return self.basic_tokenizer.tokenize_chinese_chars

    def _wordpieces(self, word):
        pieces = []
        for token in self.basic_tokenizer.tokenize_word(word):
            pieces += self.wordpiece_tokenizer.tokenize_word(token)
        return pieces

    def _check_text(self, text):
        if not isinstance(text, str):
            raise TypeError(f"FullTokenizer expects a str, got {type(text).__name__}")

    def _segments(self, text):
        """(is_special, piece of text): the text cut around the special tokens when they are kept."""
        if not self.keep_special_tokens or self._special_re is None or "[" not in text:
            return [(False, text)]
        parts = self._special_re.split(text)
        return [(i % 2 == 1, part) for i, part in enumerate(parts) if part]

    def tokenize(self, text):
        """Word pieces of `text`, e.g. "Unaffable!" -> ["una", "##ffa", "##ble", "!"]."""
        self._check_text(text)
        out = []
        for special, part in self._segments(text):
            if special:
                out.append(part)
            else:
                out += chain.from_iterable(map(self._word_tokens.__getitem__, self.basic_tokenizer.split_words(part)))
        return out

    def text_to_ids(self, text):
        """Vocabulary ids of the word pieces of `text`, without [CLS]/[SEP]."""
        self._check_text(text)
        out = []
        for special, part in self._segments(text):
            if special:
                out.append(self.vocab[part])
            else:
                out += chain.from_iterable(map(self._word_ids.__getitem__, self.basic_tokenizer.split_words(part)))
        return out

    def count_unknown(self, text):
        """(words that map to [UNK], words) of `text`: its basic tokens (words, punctuation marks, and
        each CJK character), each of which WordPiece turns into its pieces or into one [UNK]."""
        self._check_text(text)
        unk = self.vocab["[UNK]"]
        unknown = words = 0
        for word in self.basic_tokenizer.split_words(text):
            unknown += self._word_ids[word].count(unk)
            words += len(self.basic_tokenizer.tokenize_word(word))
        return unknown, words

    def words_with_offsets(self, text):
        """The basic tokens of `text` (words and punctuation marks, lower-cased and accent-stripped
        as the model sees them) with their (start, end) character spans in the original `text`.

        `[token for token, _, _ in words_with_offsets(t)]` equals `basic_tokenizer.tokenize(t)`
        (with the kept special tokens as words of their own), and `text[start:end]` is the caller's
        original spelling: upper case, accents and all. Spans are found by matching each token
        against the original characters normalised one by one; where Unicode normalisation joins
        characters so that this fails, the token gets the span of its whole whitespace-free chunk.
        """
        self._check_text(text)
        out = []
        offset = 0
        for special, part in self._segments(text):
            if special:
                out.append((part, offset, offset + len(part)))
            else:
                out += [(token, offset + start, offset + end) for token, start, end in self._basic_offsets(part)]
            offset += len(part)
        return out

    def _basic_offsets(self, text):
        basic = self.basic_tokenizer
        table = basic._clean_table
        chunks, current = [], []  # chunks of (original index, cleaned character)
        for i, char in enumerate(text):
            mapped = table[ord(char)]
            if mapped is None:
                continue  # deleted by cleaning: glues its neighbours, as in split_words
            mapped = chr(mapped) if isinstance(mapped, int) else mapped
            if mapped.isspace() or len(mapped) > 1:  # whitespace, or " c " around a CJK ideograph
                if current:
                    chunks.append(current)
                current = []
                if not mapped.isspace():  # the ideograph: a chunk of its own
                    chunks.append([(i, char)])
                continue
            current.append((i, mapped))
        if current:
            chunks.append(current)
        out = []
        for chunk in chunks:
            word = "".join(c for _, c in chunk)
            if not word.isascii():
                word = unicodedata.normalize("NFC", word)
            tokens = basic.tokenize_word(word)
            # The original characters, each normalised alone, with the index each output char came from.
            normalised, owner = [], []
            for index, char in chunk:
                if basic.do_lower_case:
                    char = char.lower()
                    if not char.isascii():
                        char = basic._run_strip_accents(char)
                normalised.append(char)
                owner += [index] * len(char)
            flat = "".join(normalised)
            cursor = 0
            chunk_span = (chunk[0][0], chunk[-1][0] + 1)
            for token in tokens:
                found = flat.find(token, cursor)
                if found < 0 or not token:
                    out.append((token, *chunk_span))
                    continue
                out.append((token, owner[found], owner[found + len(token) - 1] + 1))
                cursor = found + len(token)
        return out

    def convert_tokens_to_ids(self, tokens):
        """Ids of `tokens`; a token missing from the vocabulary is a KeyError, as in Google's."""
        return [self.vocab[token] for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.inv_vocab[i] for i in ids]

    def __len__(self):
        return len(self.vocab)

    def _special_id(self, token):
        try:
            return self.vocab[token]
        except KeyError:
            raise ConfigError(f"the vocabulary {self.vocab_file} has no {token} token; use a BERT vocab.txt") from None

    @property
    def pad_token_id(self):
        return self._special_id("[PAD]")

    @property
    def unk_token_id(self):
        return self._special_id("[UNK]")

    @property
    def cls_token_id(self):
        return self._special_id("[CLS]")

    @property
    def sep_token_id(self):
        return self._special_id("[SEP]")

    @property
    def mask_token_id(self):
        return self._special_id("[MASK]")

    # ------------------------------------------------------------------ encoding

    def encode(self, text_a, text_b=None, max_seq_length=None, padding=False,
               truncation=True) -> dict[str, list[int]]:
        """Model inputs for one sequence or a pair: [CLS] a [SEP] or [CLS] a [SEP] b [SEP].

        With `max_seq_length` and `truncation`, a single sequence keeps its first
        max_seq_length - 2 pieces and a pair is cut with `truncate_seq_pair` to
        max_seq_length - 3 pieces; with truncation=False longer inputs stay whole. `padding`
        "max_length" (or True) pads with the [PAD] id (0), mask 0 and token type 0 up to
        max_seq_length; False or "longest" add nothing to a single example.

        Returns:
          A dict of plain lists, input_ids, token_type_ids (0 up to and including the first
          [SEP], 1 after it) and attention_mask.
        """
        batch = self.encode_batch(
            [text_a], None if text_b is None else [text_b], max_seq_length, padding, truncation
        )
        return {key: rows[0] for key, rows in batch.items()}

    def encode_batch(self, texts_a, texts_b=None, max_seq_length=None, padding=False, truncation=True,
                     return_tensors=None):
        """`encode` for many examples; returns a dict of lists of lists (or of tensors).

        `texts_a` may hold `(a, b)` pairs instead of a separate `texts_b`, and may mix single texts
        and pairs. `padding`: False adds nothing, "longest" pads to the longest example of the batch,
        "max_length" to max_seq_length; True means "max_length" when max_seq_length is given and
        "longest" otherwise. `return_tensors="pt"` returns torch tensors, padded to the longest
        example unless `padding` says otherwise (a ragged batch cannot be one tensor).
        """
        texts_a = list(texts_a)
        if texts_b is not None:
            texts_b = list(texts_b)
            if len(texts_b) != len(texts_a):
                raise ValueError(f"encode_batch got {len(texts_a)} first texts but {len(texts_b)} second texts")
        else:
            texts_b = [None] * len(texts_a)
            for i, text in enumerate(texts_a):
                if isinstance(text, (tuple, list)):
                    if len(text) != 2:
                        raise ValueError(f"encode_batch: item {i} is a {type(text).__name__} of {len(text)} "
                                         "texts; give a text or an (a, b) pair")
                    texts_a[i], texts_b[i] = text
        is_pair = any(b is not None for b in texts_b)
        if max_seq_length is not None and max_seq_length < (3 if is_pair else 2):
            raise ValueError(f"max_seq_length={max_seq_length} leaves no room for [CLS] and [SEP]")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be None or 'pt', not {return_tensors!r}")
        if return_tensors and padding in (False, None, "do_not_pad"):
            padding = "longest"
        if padding is True:
            padding = "max_length" if max_seq_length is not None else "longest"
        if padding not in (False, None, "do_not_pad", "longest", "max_length"):
            raise ValueError(f"padding must be False, True, 'longest' or 'max_length', not {padding!r}")
        if padding == "max_length" and max_seq_length is None:
            raise ValueError("padding='max_length' needs max_seq_length")
        max_tokens = max_seq_length if truncation else None

        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        text_to_ids = self.text_to_ids
        all_input_ids, all_token_type_ids = [], []
        for text_a, text_b in zip(texts_a, texts_b):
            tokens_a = text_to_ids(text_a)
            tokens_b = text_to_ids(text_b) if text_b is not None else None
            if max_tokens is not None:
                truncate_for_packing(tokens_a, tokens_b, max_tokens)
            input_ids, token_type_ids = pack(tokens_a, tokens_b, cls_id, sep_id)
            all_input_ids.append(input_ids)
            all_token_type_ids.append(token_type_ids)
        all_attention_mask = [[1] * len(input_ids) for input_ids in all_input_ids]

        if padding in ("longest", "max_length"):
            pad_to = max_seq_length if padding == "max_length" else max(map(len, all_input_ids), default=0)
            pad_id = self.pad_token_id
            for input_ids, token_type_ids, attention_mask in zip(all_input_ids, all_token_type_ids, all_attention_mask):
                n = pad_to - len(input_ids)
                if n > 0:
                    input_ids += [pad_id] * n
                    token_type_ids += [0] * n
                    attention_mask += [0] * n
        batch = {"input_ids": all_input_ids, "token_type_ids": all_token_type_ids, "attention_mask": all_attention_mask}
        if return_tensors == "pt":
            import torch  # only here: the tokenizer itself needs no torch

            batch = {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}
        return batch

    # ------------------------------------------------------------------ files

    @classmethod
    def from_pretrained(cls, path, do_lower_case=None, tokenize_chinese_chars=None, keep_special_tokens=False):
        """Loads a tokenizer from a directory holding vocab.txt, or from a vocab file itself.

        A directory may also hold a transformers-style tokenizer_config.json, whose
        do_lower_case and tokenize_chinese_chars are used unless given here. Without one (or
        for a bare vocab file) both default to True, like Google's.
        """
        path = Path(path)
        vocab_file = path / VOCAB_NAME if path.is_dir() else path
        if not vocab_file.is_file():
            raise ConfigError(
                f"no WordPiece vocabulary at {vocab_file}: pass a directory that holds {VOCAB_NAME} "
                "(e.g. a BERT checkpoint directory) or the path of the vocab file itself"
            )
        config = {}
        config_file = path / CONFIG_NAME
        if path.is_dir() and config_file.is_file():
            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                raise ConfigError(f"{config_file} is not valid JSON ({e}); fix or delete it") from None
            if not isinstance(config, dict):
                raise ConfigError(f"{config_file}: expected a JSON object of tokenizer settings, got "
                                  f"{type(config).__name__}; fix or delete it")
            for key in ("do_lower_case", "tokenize_chinese_chars", "strip_accents"):
                if not isinstance(config.get(key, False), bool) and not (key == "strip_accents" and config[key] is None):
                    raise ConfigError(f"{config_file}: {key} must be true or false, got {config[key]!r}; fix or delete it")
        if do_lower_case is None:
            do_lower_case = config.get("do_lower_case", True)
        if tokenize_chinese_chars is None:
            tokenize_chinese_chars = config.get("tokenize_chinese_chars", True)
        # transformers can strip accents independently of lower-casing; Google's BERT cannot.
        strip_accents = config.get("strip_accents")
        if strip_accents is not None and strip_accents != do_lower_case:
            raise ConfigError(
                f"{config_file} sets strip_accents={strip_accents} with do_lower_case={do_lower_case}; "
                "BERT strips accents exactly when it lower-cases: remove strip_accents"
            )
        return cls(vocab_file, do_lower_case=do_lower_case, tokenize_chinese_chars=tokenize_chinese_chars,
                   keep_special_tokens=keep_special_tokens)

    def save_pretrained(self, directory):
        """Writes vocab.txt and tokenizer_config.json into `directory`, each file atomically."""
        directory = Path(directory)
        ids = sorted(self.inv_vocab)
        if ids != list(range(len(ids))):
            raise ConfigError(
                f"the vocabulary {self.vocab_file} has repeated tokens, so its ids have gaps and "
                "cannot be written back one token per line; remove the duplicate lines"
            )
        with atomic_write(directory / VOCAB_NAME) as writer:
            writer.write("".join(self.inv_vocab[i] + "\n" for i in ids))
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
        }
        with atomic_write(directory / CONFIG_NAME) as writer:
            writer.write(json.dumps(config, indent=2) + "\n")
        return directory
