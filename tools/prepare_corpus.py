"""Turn ../shared/data/corpus/ into the input of `bertkit create_pretraining_data`.

    python tools/prepare_corpus.py                                # -> outputs/corpus/corpus.txt
    python tools/prepare_corpus.py --output /tmp/corpus.txt --vocab_file path/to/vocab.txt
    python tools/prepare_corpus.py --heldout_output outputs/corpus/heldout.txt   # every 10th article held out

Output (Google's format): one sentence per line, a blank line between documents. It prints how
many documents, sentences, words (whitespace-separated) and WordPiece tokens it wrote, per source.

Sources and what is done to them:

* wikitext-2-raw/wiki.valid.raw and wiki.test.raw (120 Wikipedia articles): one document per
  article. An article starts at a ` = Title = ` line that has a blank line before and after it
  (two formula lines of "Constant k filter" look like titles but sit inside a paragraph).
  Section headings (` = = Heading = = `) are dropped; WikiText's ` @-@ `, ` @,@ ` and ` @.@ `
  become `-`, `,` and `.` again. The rest of WikiText's tokenization (spaces around punctuation)
  is left: BERT's tokenizer splits punctuation off anyway, so the WordPieces are the same.
* gutenberg-nltk/*.txt (13 books): one document per book. The `[Title by Author Year]` line is
  dropped; paragraphs (separated by blank lines) are unwrapped, their hard line breaks joined with
  spaces; paragraphs without a lower-case letter (CHAPTER I, VOLUME II, [BOOK I. INSCRIPTIONS])
  are dropped as headings.

Sentence splitting is rule based: a sentence ends after `.`, `!` or `?` (and any closing quotes
or brackets) that is followed by whitespace and then a capital letter or a digit (optionally
after an opening quote or bracket), except after a known abbreviation (Mr., Mrs., Dr., St.,
e.g., ...) or a single capital letter or chain of initials (H. americanus, A.H. Smith). Verse,
dialogue and speaker labels ("Fran. Nay answer me") are split by the same rule, which is good
enough for NSP pairs.

The output path must be outside the repository's tracked files (the default, outputs/, is
git-ignored); the corpus itself is never copied into the repository.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bertkit.io_utils import atomic_write  # noqa: E402
from bertkit.paths import shared_data_dir  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402

DEFAULT_OUTPUT = ROOT / "outputs" / "corpus" / "corpus.txt"
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "rev", "hon", "gen", "col", "capt", "lt", "sgt", "maj",
    "gov", "sen", "rep", "mt", "ft", "no", "nos", "vol", "vols", "fig", "figs", "pp", "ed", "eds", "vs", "etc",
    "e.g", "i.e", "cf", "al", "approx", "ca", "c", "jan", "feb", "mar", "apr", "aug", "sept", "sep", "oct", "nov",
    "dec", "inc", "ltd", "co", "corp", "u.s", "u.k", "op", "esq",
}
_BOUNDARY = re.compile(r"""([.!?]+)(["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])""")
_INITIALS = re.compile(r"(?:[A-Z]\.)*[A-Z]")
_WIKI_TITLE = re.compile(r" = [^=].* = ")
_WIKI_HEADING = re.compile(r" (= ){2,}.*( =){2,} ")
_WIKI_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


def split_sentences(text: str) -> list[str]:
    """The module docstring's rule; whitespace inside a sentence is collapsed to single spaces."""
    text = " ".join(text.split())
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        words = text[start:match.start()].split()
        last = (words[-1] if words else "").lstrip("([\"'\u201c\u2018")
        if match.group(1) == "." and (last.lower() in ABBREVIATIONS or _INITIALS.fullmatch(last)):
            continue
        sentences.append(text[start:match.end(2)].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def wikitext_documents(path: Path) -> list[list[str]]:
    """Articles of a WikiText raw file, each a list of paragraphs."""
    lines = path.read_text(encoding="utf-8").split("\n")
    documents: list[list[str]] = []
    for i, line in enumerate(lines):
        blank_around = 0 < i < len(lines) - 1 and not lines[i - 1].strip() and not lines[i + 1].strip()
        if _WIKI_TITLE.fullmatch(line) and blank_around:
            documents.append([])
        elif _WIKI_HEADING.fullmatch(line) or not line.strip():
            continue
        else:
            if not documents:
                documents.append([])
            for escaped, plain in _WIKI_ESCAPES:
                line = line.replace(escaped, plain)
            documents[-1].append(line.strip())
    return [d for d in documents if d]


def gutenberg_paragraphs(path: Path) -> list[str]:
    """A book's paragraphs, unwrapped, without its title line and headings."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and re.fullmatch(r"\[.*\]", lines[0].strip()):
        lines = lines[1:]
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip().lstrip("}").strip())
        elif current:
            paragraph = " ".join(current)
            if re.search(r"[a-z]", paragraph):
                paragraphs.append(paragraph)
            current = []
    return paragraphs


@dataclass
class Counts:
    documents: int = 0
    sentences: int = 0
    words: int = 0
    wordpieces: int = 0

    def add(self, other: Counts) -> None:
        for name in ("documents", "sentences", "words", "wordpieces"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def write_documents(handle, documents: list[list[str]], tokenizer: FullTokenizer | None) -> Counts:
    counts = Counts()
    for paragraphs in documents:
        sentences = [s for p in paragraphs for s in split_sentences(p)]
        if not sentences:
            continue
        handle.writelines(s + "\n" for s in sentences)
        handle.write("\n")
        counts.documents += 1
        counts.sentences += len(sentences)
        counts.words += sum(len(s.split()) for s in sentences)
        if tokenizer is not None:
            counts.wordpieces += sum(len(tokenizer.text_to_ids(s)) for s in sentences)
    return counts


def check_output(path: Path) -> None:
    """Refuse to write over a file the repository tracks (outputs/ is git-ignored)."""
    resolved = path.resolve()
    if ROOT not in resolved.parents:
        return
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(resolved)], check=False).returncode == 0
    if not ignored:
        sys.exit(f"prepare_corpus: {path} is inside the repository and not git-ignored; write under "
                 f"{ROOT / 'outputs'} or outside the repository")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", type=Path, default=None, help="default: ../shared/data/corpus")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    parser.add_argument("--vocab_file", default=None,
                        help="vocab.txt to count WordPiece tokens with (default: the shared bert-base-uncased; "
                             "'none' skips the count)")
    parser.add_argument("--do_lower_case", default="true", choices=["true", "false"])
    parser.add_argument("--heldout_output", type=Path, default=None,
                        help="write every --heldout_every-th Wikipedia article here instead (evaluation text "
                             "the model never trains on)")
    parser.add_argument("--heldout_every", type=int, default=10)
    args = parser.parse_args(argv)

    shared = shared_data_dir()
    corpus_dir = args.corpus_dir or (shared / "corpus" if shared else None)
    if corpus_dir is None or not corpus_dir.is_dir():
        sys.exit("prepare_corpus: no corpus folder: pass --corpus_dir (the shared data's corpus/)")
    vocab_file = args.vocab_file
    if vocab_file is None and shared is not None:
        vocab_file = shared / "vocab" / "bert-base-uncased" / "vocab.txt"
    tokenizer = None
    if vocab_file is not None and str(vocab_file).lower() != "none":
        tokenizer = FullTokenizer(vocab_file, do_lower_case=args.do_lower_case == "true")
    check_output(args.output)
    if args.heldout_output is not None:
        check_output(args.heldout_output)

    wiki = sorted((corpus_dir / "wikitext-2-raw").glob("wiki.*.raw"), reverse=True)  # valid, then test
    books = sorted((corpus_dir / "gutenberg-nltk").glob("*.txt"))
    if not wiki and not books:
        sys.exit(f"prepare_corpus: {corpus_dir} has neither wikitext-2-raw/wiki.*.raw nor gutenberg-nltk/*.txt")
    per_source: dict[str, Counts] = {}
    heldout: list[list[str]] = []
    with atomic_write(args.output) as handle:
        for path in wiki:
            articles = wikitext_documents(path)
            if args.heldout_output is not None:
                heldout += articles[args.heldout_every - 1::args.heldout_every]
                del articles[args.heldout_every - 1::args.heldout_every]
            per_source[f"wikitext-2-raw/{path.name}"] = write_documents(handle, articles, tokenizer)
        for path in books:
            per_source[f"gutenberg-nltk/{path.name}"] = write_documents(handle, [gutenberg_paragraphs(path)],
                                                                         tokenizer)
    if args.heldout_output is not None:
        with atomic_write(args.heldout_output) as handle:
            per_source[f"held out -> {args.heldout_output.name}"] = write_documents(handle, heldout, tokenizer)
    total = Counts()
    print(f"{'source':42s} {'documents':>9s} {'sentences':>10s} {'words':>10s} {'wordpieces':>11s}")
    for name, counts in per_source.items():
        if not name.startswith("held out"):
            total.add(counts)
        print(f"{name:42s} {counts.documents:9d} {counts.sentences:10d} {counts.words:10d} {counts.wordpieces:11d}")
    print(f"{'total (training)':42s} {total.documents:9d} {total.sentences:10d} {total.words:10d} {total.wordpieces:11d}")
    print(f"wrote {args.output}" + ("" if tokenizer else " (WordPieces not counted: no --vocab_file)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
