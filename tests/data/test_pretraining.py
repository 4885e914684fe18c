"""create_pretraining_data: Google's instance semantics, the shard format, streaming memory and errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import random
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bertkit.cli.main import main
from bertkit.data.batching import PaddingCollator
from bertkit.data.pretraining import (SHARD_ARRAYS, Document, MaskingVocab, PretrainingDataConfig, PretrainingDataset,
                                      create_masked_lm_predictions, create_pretraining_data, expand_input_files,
                                      iter_chunks, iter_training_instances, load_index)
from bertkit.errors import ConfigError, DataError
from bertkit.tokenization import FullTokenizer

ROOT = Path(__file__).resolve().parents[2]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(40)]
WORDS = ("the a an of and to in is was he she it they we you i that this with for on as at by from be have has had "
         "not but or are were his her their its my our your cat dog house car tree book water fire day night good bad "
         "new old big small red blue green run walk talk sit eat sleep read write play jump").split()
PIECES = ["##s", "##ing", "##ed"]
SUFFIXES = ["s", "ing", "ed"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A vocabulary with many special entries, so a replacement drawn from them would show."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(SPECIAL + WORDS + PIECES) + "\n", encoding="utf-8")
    return FullTokenizer(path)


def write_corpus(path: Path, documents: int, seed: int = 0, sentences=(5, 30), words=(3, 12),
                 suffix_prob: float = 0.2) -> Path:
    """Random sentences of vocabulary words (some with ##pieces), blank lines between documents."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(documents):
            for _ in range(rng.randint(*sentences)):
                handle.write(" ".join(rng.choice(WORDS) + (rng.choice(SUFFIXES) if rng.random() < suffix_prob else "")
                                      for _ in range(rng.randint(*words))) + "\n")
            handle.write("\n")
    return path


def instances(tokenizer, path: Path, **settings):
    return list(iter_training_instances([path], tokenizer, PretrainingDataConfig(**settings)))


@pytest.fixture(scope="module")
def sample(tokenizer, tmp_path_factory):
    """A large sample: ~2800 instances, ~25k masked positions."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", 120, sentences=(30, 80))
    return instances(tokenizer, corpus, max_seq_length=64, dupe_factor=2, max_predictions_per_seq=20)


def test_masking_rate_is_15_percent_capped_by_max_predictions(sample, tokenizer):
    for instance in sample:
        expected = min(20, max(1, int(round(len(instance.input_ids) * 0.15))))
        assert len(instance.masked_lm_positions) == expected
    masked = sum(len(i.masked_lm_positions) for i in sample)
    tokens = sum(len(i.input_ids) for i in sample)
    assert masked / tokens == pytest.approx(0.15, abs=0.01)
    capped = instances(tokenizer, write_corpus(Path(tokenizer.vocab_file).parent / "c.txt", 20),
                       max_seq_length=64, dupe_factor=1, max_predictions_per_seq=3)
    assert max(len(i.masked_lm_positions) for i in capped) == 3
    assert all(len(i.masked_lm_positions) == min(3, max(1, round(len(i.input_ids) * 0.15))) for i in capped)


def test_80_10_10(sample, tokenizer):
    mask_id = tokenizer.mask_token_id
    kinds = {"mask": 0, "same": 0, "random": 0}
    for instance in sample:
        for position, label in zip(instance.masked_lm_positions, instance.masked_lm_ids):
            token = instance.input_ids[position]
            kinds["mask" if token == mask_id else "same" if token == label else "random"] += 1
    total = sum(kinds.values())
    assert total > 20_000
    # A random replacement hits the original token 1 time in len(WORDS + PIECES).
    chance = 0.1 / len(WORDS + PIECES)
    assert kinds["mask"] / total == pytest.approx(0.8, abs=0.012)
    assert kinds["same"] / total == pytest.approx(0.1 + chance, abs=0.008)
    assert kinds["random"] / total == pytest.approx(0.1 - chance, abs=0.008)


def test_replacement_tokens_are_never_special_and_always_in_the_vocab(sample, tokenizer):
    special_ids = {tokenizer.vocab[t] for t in SPECIAL}
    vocab = MaskingVocab.from_tokenizer(tokenizer)
    assert set(vocab.replacement_ids) == set(range(len(tokenizer))) - special_ids
    replaced = [instance.input_ids[p] for instance in sample for p, label in
                zip(instance.masked_lm_positions, instance.masked_lm_ids)
                if instance.input_ids[p] not in (tokenizer.mask_token_id, label)]
    assert len(replaced) > 1000
    assert not set(replaced) & special_ids
    assert all(0 <= t < len(tokenizer) for i in sample for t in i.input_ids)
    # Direct draws: everything picked, all replaced at random would show a special token quickly.
    rng = random.Random(0)
    for _ in range(200):
        ids = [tokenizer.cls_token_id] + [tokenizer.vocab["cat"]] * 10 + [tokenizer.sep_token_id]
        out, positions, _ = create_masked_lm_predictions(ids, 0.9, 20, vocab, rng)
        assert not {out[p] for p in positions} & (special_ids - {tokenizer.mask_token_id})


def test_instances_fit_and_have_consistent_segments(sample, tokenizer):
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    short = 0
    for instance in sample:
        ids, segments = instance.input_ids, instance.segment_ids
        assert len(ids) == len(segments) <= 64
        assert ids[0] == cls_id and ids[-1] == sep_id and ids.count(sep_id) == 2 and ids.count(cls_id) == 1
        first_sep = ids.index(sep_id)
        assert 1 < first_sep < len(ids) - 2  # both segments hold at least one token
        assert segments == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
        positions = instance.masked_lm_positions
        assert positions == sorted(set(positions)) and len(positions) == len(instance.masked_lm_ids)
        assert all(0 < p < len(ids) and p != first_sep and p != len(ids) - 1 for p in positions)
        short += len(ids) < 40
    assert 0.03 < short / len(sample) < 0.3  # short_seq_prob=0.1 makes some instances short


def test_next_sentence_labels_are_balanced(sample):
    # Google's algorithm: 50% random next, plus the chunks of a single sentence, which must be random.
    assert 0.47 < np.mean([i.is_random_next for i in sample]) < 0.58


def test_random_next_never_comes_from_the_same_document(tokenizer, tmp_path):
    # Document d repeats one word, so every token tells which document it came from.
    path = tmp_path / "docs.txt"
    rng = random.Random(1)
    with open(path, "w") as handle:
        for word in WORDS[:23]:
            for _ in range(rng.randint(1, 8)):
                handle.write(" ".join([word] * rng.randint(1, 9)) + "\n")
            handle.write("\n")
    word_ids = {tokenizer.vocab[w] for w in WORDS}
    seen_random = 0
    for chunk_documents in (2, 3, 1000):  # 23 documents: chunks of 2 and 3 must leave no chunk of one document
        made = instances(tokenizer, path, max_seq_length=24, dupe_factor=5, chunk_documents=chunk_documents)
        for instance in made:
            masked = set(instance.masked_lm_positions)
            first_sep = instance.input_ids.index(tokenizer.sep_token_id)
            a = {t for p, t in enumerate(instance.input_ids[1:first_sep], 1) if p not in masked}
            b = {t for p, t in enumerate(instance.input_ids[first_sep + 1:-1], first_sep + 1) if p not in masked}
            if not a or not b:
                continue
            assert len(a) == 1 and len(b) == 1 and a | b <= word_ids
            assert (a != b) == instance.is_random_next
            seen_random += instance.is_random_next
    assert seen_random > 300


def test_chunks_always_hold_two_documents():
    documents = [Document([], 10, str(i)) for i in range(7)]
    for size in (2, 3, 4, 6, 7, 100):
        chunks = list(iter_chunks(documents, size, 10 ** 9))
        assert [d.source for c in chunks for d in c] == [str(i) for i in range(7)]
        assert all(len(c) >= 2 for c in chunks) and all(len(c) <= size + 1 for c in chunks)
    assert [len(c) for c in iter_chunks(documents, 3, 10 ** 9)] == [3, 4]  # the 7th joins the last chunk
    assert [len(c) for c in iter_chunks(documents, 100, 25)] == [3, 4]  # by tokens
    assert [len(c) for c in iter_chunks(documents[:1], 2, 1)] == [1]


def unmasked_ids(instance) -> list[int]:
    """The instance's input ids with every masked position given back its original id."""
    original = list(instance.input_ids)
    for position, label in zip(instance.masked_lm_positions, instance.masked_lm_ids):
        original[position] = label
    return original


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 40, suffix_prob=0.6)
    continuation = MaskingVocab.from_tokenizer(tokenizer).is_continuation
    made = instances(tokenizer, corpus, max_seq_length=48, dupe_factor=2, do_whole_word_mask=True)
    pieces_masked = 0
    for instance in made:
        original = unmasked_ids(instance)
        masked = set(instance.masked_lm_positions)
        text = [p for p, t in enumerate(original) if t not in (tokenizer.cls_token_id, tokenizer.sep_token_id)]
        for before, p in zip(text, text[1:]):
            # A ##piece is masked exactly when the piece before it is (across a [SEP] too, when truncation
            # cut a word's start off: Google's grouping skips [CLS] and [SEP]).
            if continuation[original[p]]:
                assert (p in masked) == (before in masked)
                pieces_masked += p in masked
        assert len(masked) <= min(20, max(1, round(len(original) * 0.15)))
    assert pieces_masked > 50


def read_shards(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_shards_round_trip_and_are_deterministic(tokenizer, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 60)
    config = PretrainingDataConfig(max_seq_length=32, dupe_factor=2, instances_per_shard=300, chunk_documents=7)
    index = create_pretraining_data(str(corpus), tmp_path / "a", tokenizer, config)
    create_pretraining_data([corpus], tmp_path / "b", tokenizer, config)
    assert read_shards(tmp_path / "a") == read_shards(tmp_path / "b")
    other = create_pretraining_data(str(corpus), tmp_path / "c", tokenizer,
                                    PretrainingDataConfig(**{**config.__dict__, "random_seed": 7}))
    assert read_shards(tmp_path / "a") != read_shards(tmp_path / "c")

    # The shards hold exactly the instances, in per-shard shuffled order.
    made = list(iter_training_instances([corpus], tokenizer, config))
    assert index["num_instances"] == len(made) and len(index["shards"]) > 2 and other["num_instances"] > 0
    assert index["num_masked_lm"] == sum(len(i.masked_lm_positions) for i in made)
    assert index["num_random_next"] == sum(i.is_random_next for i in made)
    assert index["num_documents"] == 60 and index["settings"]["max_seq_length"] == 32
    data = PretrainingDataset(tmp_path / "a")
    assert len(data) == len(made) and data.max_seq_length == 32
    written = sorted((tuple(data[i]["input_ids"]), tuple(data[i]["token_type_ids"]), tuple(data[i]["masked_lm_positions"]),
                      tuple(data[i]["labels"]), data[i]["next_sentence_label"]) for i in range(len(data)))
    expected = sorted((tuple(i.input_ids), tuple(i.segment_ids), tuple(i.masked_lm_positions), tuple(i.masked_lm_ids),
                       int(i.is_random_next)) for i in made)
    assert written == expected
    assert list(data.lengths) == [len(data[i]["input_ids"]) for i in range(len(data))]
    shard = tmp_path / "a" / "shard-00000"
    for name, dtype in SHARD_ARRAYS.items():
        values = np.load(shard / f"{name}.npy", mmap_mode="r")
        assert isinstance(values, np.memmap) and values.dtype == dtype
    batch = PaddingCollator()([data[i] for i in range(5)])
    assert batch["labels"].shape == batch["masked_lm_positions"].shape and batch["next_sentence_label"].shape == (5,)
    assert (batch["labels"] == -100).sum() == (batch["masked_lm_positions"] == 0).sum()
    assert len(PretrainingDataset(f"{tmp_path / 'a'},{tmp_path / 'b'}")) == 2 * len(made)
    assert len(PretrainingDataset(tmp_path / "a", limit=10)) == 10

    # Rewriting a folder with fewer shards removes the surplus ones.
    small = create_pretraining_data(str(corpus), tmp_path / "a", tokenizer,
                                    PretrainingDataConfig(**{**config.__dict__, "dupe_factor": 1}))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["index.json"] + [s["name"] for s in small["shards"]]


def test_memory_stays_bounded_as_the_corpus_grows(tokenizer, tmp_path):
    config = PretrainingDataConfig(max_seq_length=32, dupe_factor=1, chunk_documents=10, instances_per_shard=200)
    create_pretraining_data(str(write_corpus(tmp_path / "warm.txt", 20)), tmp_path / "warm", tokenizer, config)
    peaks = {}
    for documents in (150, 2400):
        corpus = write_corpus(tmp_path / f"c{documents}.txt", documents, seed=documents, sentences=(5, 15))
        tracemalloc.start()
        try:
            index = create_pretraining_data(str(corpus), tmp_path / f"o{documents}", tokenizer, config)
            peaks[documents] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # 16 times the corpus, about the same peak: what grows is only the list of shards for index.json, about
    # 1 KB per shard (4 shards -> 54: 250 KB -> 307 KB here; 1.25x was too tight for another machine's
    # allocator). Holding the corpus would grow with it: the big corpus's instances as int32 token ids
    # alone (as Python lists: several times more) are 3x that peak.
    assert peaks[2400] < 1.5 * peaks[150]
    assert index["num_tokens"] * 4 > 3 * peaks[2400]


def test_input_errors_name_the_file(tokenizer, tmp_path):
    config = PretrainingDataConfig(max_seq_length=32, dupe_factor=1)
    out = tmp_path / "out"
    missing = tmp_path / "missing.txt"
    with pytest.raises(DataError, match=str(missing)):
        create_pretraining_data(str(missing), out, tokenizer, config)
    with pytest.raises(DataError, match="matches no file"):
        expand_input_files(str(tmp_path / "nothing-*.txt"))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"the cat\n\xff\xfe\x00 dog\n")
    with pytest.raises(DataError, match=f"{binary}.*UTF-8"):
        create_pretraining_data(str(binary), out, tokenizer, config)
    nul = tmp_path / "nul.txt"
    nul.write_text("the cat\n\nthe\x00dog\n")
    with pytest.raises(DataError, match=f"{nul}:3: .*NUL"):
        create_pretraining_data(str(nul), out, tokenizer, config)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n\n")
    with pytest.raises(DataError, match=f"{empty}: no sentences"):
        create_pretraining_data(str(empty), out, tokenizer, config)
    single = tmp_path / "single.txt"
    single.write_text("the cat sat\nthe dog ran\n\n\n")
    with pytest.raises(DataError, match=f"{single}.*single document.*{single}:1"):
        create_pretraining_data(str(single), out, tokenizer, config)
    with pytest.raises(ConfigError, match="max_seq_length"):
        PretrainingDataConfig(max_seq_length=4)
    assert not (out / "index.json").exists()


def test_shard_errors_name_the_file(tokenizer, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        PretrainingDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'empty' / 'index.json'} is missing"):
        PretrainingDataset(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text("{not json")
    with pytest.raises(DataError, match="index.json is not valid JSON"):
        load_index(tmp_path / "bad")
    (tmp_path / "bad" / "index.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError, match="not a bertkit pre-training index"):
        load_index(tmp_path / "bad")

    corpus = write_corpus(tmp_path / "corpus.txt", 10)
    out = tmp_path / "out"
    create_pretraining_data(str(corpus), out, tokenizer, PretrainingDataConfig(max_seq_length=32, dupe_factor=1))
    ids = out / "shard-00000" / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match=str(ids)):
        PretrainingDataset(out)[0]
    ids.unlink()
    with pytest.raises(DataError, match=f"{ids} is missing"):
        PretrainingDataset(out)[0]
    index = json.loads((out / "index.json").read_text())
    index["shards"][0]["num_instances"] += 1
    (out / "index.json").write_text(json.dumps(index))
    np.save(ids, np.zeros(3, dtype=np.int32))
    with pytest.raises(DataError, match="shard-00000/offsets.npy: does not hold the"):
        PretrainingDataset(out)[0]


def test_cli(tokenizer, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "part1.txt", 10), write_corpus(tmp_path / "part2.txt", 10, seed=1)
    out = tmp_path / "out"
    assert main(["-q", "create_pretraining_data", f"--input_file={tmp_path / 'part*.txt'}", f"--output_dir={out}",
                 f"--vocab_file={tokenizer.vocab_file}", "--max_seq_length=32", "--dupe_factor=2",
                 "--do_whole_word_mask=true", "--instances_per_shard=100"]) == 0
    printed = dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())
    index = json.loads((out / "index.json").read_text())
    assert int(printed["num_instances"]) == index["num_instances"] == len(PretrainingDataset(out))
    assert index["num_documents"] == 20 and index["input_files"] == [str(p) for p in corpus]
    assert index["settings"]["do_whole_word_mask"] is True and int(printed["shards"]) == len(index["shards"]) > 1
    assert main(["-q", "create_pretraining_data", f"--input_file={tmp_path / 'nope.txt'}", f"--output_dir={out}",
                 f"--vocab_file={tokenizer.vocab_file}"]) == 2
    assert f"{tmp_path / 'nope.txt'} does not exist" in capsys.readouterr().err


def test_prepare_corpus_tool(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("prepare_corpus", ROOT / "tools" / "prepare_corpus.py")
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "prepare_corpus", tool)  # its dataclass looks itself up there
    spec.loader.exec_module(tool)
    assert tool.split_sentences("Mr. Smith met H. americanus in 1999. It was 2 @.@ 5 m long ! \"Wow.\" Then (A.H. Jones) "
                                "left. Brown stayed, e.g. Smith too.") == [
        "Mr. Smith met H. americanus in 1999.", "It was 2 @.@ 5 m long !", "\"Wow.\"", "Then (A.H. Jones) left.",
        "Brown stayed, e.g. Smith too."]
    corpus = tmp_path / "corpus"
    (corpus / "wikitext-2-raw").mkdir(parents=True)
    (corpus / "gutenberg-nltk").mkdir()
    (corpus / "wikitext-2-raw" / "wiki.valid.raw").write_text(
        " \n = First = \n \n The cat @-@ like dog ran 1 @,@ 000 m . It sat .\n \n = = Part = = \n \n"
        " A line , then\n = 1 henry and capacitance C = \n the rest .\n \n = Second = \n \n Red is 2 @.@ 5 . Blue .\n")
    (corpus / "gutenberg-nltk" / "book.txt").write_text(
        "[A Book by Someone 1900]\n\nCHAPTER I\n\nThe old house stood\nby the water. The tree\ngrew tall.\n\n"
        "She said, \"Go.\"  He went.\n")
    out = tmp_path / "out" / "corpus.txt"
    assert tool.main([f"--corpus_dir={corpus}", f"--output={out}", "--vocab_file=none"]) == 0
    documents = [d.splitlines() for d in out.read_text().split("\n\n") if d.strip()]
    assert documents == [
        ["The cat-like dog ran 1,000 m .", "It sat .", "A line , then", "= 1 henry and capacitance C =", "the rest ."],
        ["Red is 2.5 .", "Blue ."],
        ["The old house stood by the water.", "The tree grew tall.", "She said, \"Go.\"", "He went."]]
    printed = capsys.readouterr().out
    assert "total" in printed and " 3 " in printed.splitlines()[-2]
    heldout = tmp_path / "out" / "heldout.txt"
    assert tool.main([f"--corpus_dir={corpus}", f"--output={out}", "--vocab_file=none", f"--heldout_output={heldout}",
                      "--heldout_every=2"]) == 0
    assert heldout.read_text() == "Red is 2.5 .\nBlue .\n\n"
    assert "Red is" not in out.read_text() and "The cat-like" in out.read_text()
    assert "total (training)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not git-ignored"):
        tool.main([f"--corpus_dir={corpus}", f"--output={ROOT / 'README.md'}", "--vocab_file=none"])


# -- Chinese: sentence splitting, one document per line, whole-word masking from a segmenter ------

ZH_WORDS = ["酒店", "服务", "房间", "早餐", "位置", "方便", "干净", "不错", "价格", "便宜", "我们", "喜欢", "电脑",
            "键盘", "屏幕", "很", "好", "差", "大", "小", "的", "了", "是"]


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    chars = sorted({char for word in ZH_WORDS for char in word} | set("。！？，"))
    path = tmp_path_factory.mktemp("zh_vocab") / "vocab.txt"
    path.write_text("\n".join(SPECIAL + chars + ["iphone", "##4"]) + "\n", encoding="utf-8")
    return FullTokenizer(path)


def fake_segmenter(line: str) -> list[str]:
    """Greedy longest match over ZH_WORDS: a stand-in for jieba that needs nothing installed."""
    words, i = [], 0
    while i < len(line):
        word = next((w for w in sorted(ZH_WORDS, key=len, reverse=True) if line.startswith(w, i)), line[i])
        words.append(word)
        i += len(word)
    return words


def write_reviews(path: Path, reviews: int, seed: int = 0) -> Path:
    """One review per line, several sentences each, as ChnSentiCorp's texts."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(reviews):
            sentences = ["".join(rng.choice(ZH_WORDS) for _ in range(rng.randint(2, 8))) + rng.choice("。！？")
                         for _ in range(rng.randint(2, 6))]
            handle.write("".join(sentences) + "\n")
    return path


def test_chinese_sentences_split_after_full_width_marks():
    from bertkit.data.pretraining import split_sentences

    assert split_sentences("房间很大。早餐不错！价格呢？还好") == ["房间很大。", "早餐不错！", "价格呢？", "还好"]
    assert split_sentences("“太好了！”他说。。。好吧……") == ["“太好了！”", "他说。。。", "好吧……"]
    assert split_sentences("Great! Really?  Yes") == ["Great!", "Really?", "Yes"]
    assert split_sentences("没有句号") == ["没有句号"] and split_sentences("。") == ["。"]


def test_one_review_per_line_becomes_documents_of_sentences(zh_tokenizer, tmp_path):
    from bertkit.data.pretraining import read_documents

    corpus = tmp_path / "reviews.txt"
    corpus.write_text("房间很大。早餐不错！\n位置方便。\n\n价格便宜？很好\n", encoding="utf-8")
    config = PretrainingDataConfig(one_document_per_line=True, split_sentences=True)
    documents = list(read_documents([corpus], zh_tokenizer, config=config))
    assert [len(d.sentences) for d in documents] == [2, 1, 2] and documents[2].source == f"{corpus}:4"
    assert zh_tokenizer.convert_ids_to_tokens(documents[0].sentences[1]) == list("早餐不错！")  # a token per character
    plain = list(read_documents([corpus], zh_tokenizer))  # Google's format: a line is a sentence
    assert [len(d.sentences) for d in plain] == [2, 1]


def test_segmented_ids_mark_the_later_characters_of_a_word(zh_tokenizer):
    from bertkit.data.pretraining import segmented_ids

    text = "酒店很干净，iPhone4的屏幕小"
    ids, continues = segmented_ids(zh_tokenizer, text, fake_segmenter)
    assert ids == zh_tokenizer.text_to_ids(text)  # the tokens do not change
    tokens = zh_tokenizer.convert_ids_to_tokens(ids)
    assert list(zip(tokens, continues)) == [
        ("酒", 0), ("店", 1), ("很", 0), ("干", 0), ("净", 1), ("，", 0), ("iphone", 0), ("##4", 0), ("的", 0),
        ("屏", 0), ("幕", 1), ("小", 0)]
    with pytest.raises(ConfigError, match="segmenter changed the text"):
        segmented_ids(zh_tokenizer, text, lambda line: line.split("，"))


def check_whole_words(made, tokenizer, words_of) -> int:
    """Every instance masks whole segmenter words: a character is masked exactly when the rest of
    its word (within the instance) is. Returns the number of masked words of two or more characters."""
    specials = (tokenizer.cls_token_id, tokenizer.sep_token_id)
    multi = 0
    for instance in made:
        original = unmasked_ids(instance)
        masked = set(instance.masked_lm_positions)
        # The segments' text, re-segmented: the instance holds whole sentences but for truncated ends.
        for start, end in _segments(original, specials):
            chars = tokenizer.convert_ids_to_tokens(original[start:end])
            position = start
            for word in words_of("".join(chars)):
                span = range(position, position + len(word))
                inside = [p in masked for p in span]
                if position > start and position + len(word) < end:  # words cut by truncation aside
                    assert all(inside) or not any(inside), (word, inside)
                    multi += all(inside) and len(word) > 1
                position += len(word)
    return multi


def _segments(ids, specials):
    start = 1
    for i, token in enumerate(ids):
        if token in specials and i:
            yield start, i
            start = i + 1


def test_chinese_whole_word_masking_with_a_segmenter(zh_tokenizer, tmp_path):
    corpus = write_reviews(tmp_path / "reviews.txt", 60)
    config = PretrainingDataConfig(max_seq_length=48, dupe_factor=3, do_whole_word_mask=True,
                                   one_document_per_line=True, split_sentences=True)
    made = list(iter_training_instances([corpus], zh_tokenizer, config, segmenter=fake_segmenter))
    assert check_whole_words(made, zh_tokenizer, fake_segmenter) > 100
    # Without the segmenter every character is a word: characters of one word are masked apart.
    plain = list(iter_training_instances([corpus], zh_tokenizer, dataclasses.replace(config, do_whole_word_mask=False)))
    with pytest.raises(AssertionError):
        check_whole_words(plain, zh_tokenizer, fake_segmenter)


def test_word_segmenter_flags(zh_tokenizer, tmp_path, capsys):
    with pytest.raises(ConfigError, match="add --do_whole_word_mask"):
        PretrainingDataConfig(word_segmenter="jieba")
    with pytest.raises(ConfigError, match="not one of jieba"):
        PretrainingDataConfig(word_segmenter="ltp", do_whole_word_mask=True)
    corpus = write_reviews(tmp_path / "reviews.txt", 20)
    argv = ["-q", "create_pretraining_data", f"--input_file={corpus}", f"--output_dir={tmp_path / 'out'}",
            f"--vocab_file={zh_tokenizer.vocab_file}", "--max_seq_length=32", "--dupe_factor=1",
            "--one_document_per_line", "--split_sentences", "--do_whole_word_mask", "--word_segmenter=jieba"]
    if importlib.util.find_spec("jieba") is None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "pip install 'bertkit[zh]'" in err and "Traceback" not in err and not (tmp_path / "out").exists()
        return
    assert main(argv) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["settings"]["word_segmenter"] == "jieba" and index["num_documents"] == 20
    assert index["num_sentences"] > 40


@pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="jieba is not installed (pip install jieba)")
def test_chinese_whole_word_masking_with_jieba(zh_tokenizer, tmp_path):
    import jieba

    corpus = write_reviews(tmp_path / "reviews.txt", 60, seed=1)
    config = PretrainingDataConfig(max_seq_length=48, dupe_factor=2, do_whole_word_mask=True, word_segmenter="jieba",
                                   one_document_per_line=True, split_sentences=True)
    made = list(iter_training_instances([corpus], zh_tokenizer, config))
    assert check_whole_words(made, zh_tokenizer, jieba.lcut) > 50


def test_whole_word_masking_of_chinese_without_a_segmenter_says_so(zh_tokenizer, tmp_path, caplog):
    corpus = write_reviews(tmp_path / "reviews.txt", 10)
    config = PretrainingDataConfig(max_seq_length=32, dupe_factor=1, do_whole_word_mask=True, one_document_per_line=True)
    with caplog.at_level("WARNING", logger="bertkit.data.pretraining"):
        list(iter_training_instances([corpus], zh_tokenizer, config))
    assert "add --word_segmenter=jieba" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="bertkit.data.pretraining"):
        list(iter_training_instances([corpus], zh_tokenizer, config, segmenter=fake_segmenter))
    assert "word_segmenter" not in caplog.text
