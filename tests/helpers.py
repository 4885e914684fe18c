"""Small builders shared by the tests: tiny configs and random batches."""

from __future__ import annotations

from pathlib import Path

import torch

from bertkit.config import BertConfig


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def random_batch(config: BertConfig, batch: int = 3, length: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch with padding in some rows and two segments, so masks and token types matter."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, config.vocab_size, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        attention_mask[row, length - 2 * row:] = 0
    input_ids = input_ids * attention_mask
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def make_examples(n: int, seed: int) -> list[dict]:
    """Feature dicts of 3 to 23 tokens (vocab 99); the label is whether the first token is in the
    upper half, so a tiny classifier can learn it."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(3, 24, (1,), generator=g))
        ids = torch.randint(1, 99, (length,), generator=g).tolist()
        examples.append({"input_ids": ids, "attention_mask": [1] * length, "token_type_ids": [0] * length,
                         "labels": int(ids[0] >= 50)})
    return examples


def hf_config(transformers, config: BertConfig, **extra):
    return transformers.BertConfig(**{**config.to_hf_dict(), **extra})


REPO = Path(__file__).resolve().parents[1]
# The vocab beside the TensorFlow-written fixtures: 99 tokens, enough for tiny from-scratch runs.
FIXTURES = REPO / "tests" / "fixtures"
MRPC_SAMPLE = REPO / "examples" / "data" / "mrpc_sample"
TINY_TF = FIXTURES / "tf" / "bert_tiny_classifier"  # a Google checkpoint: 2 layers, 64 positions
TINY_VOCAB = TINY_TF / "vocab.txt"
# The CLI flags that load TINY_TF.
TINY_TF_FLAGS = [f"--init_checkpoint={TINY_TF / 'bert_model.ckpt'}", f"--vocab_file={TINY_VOCAB}",
                 f"--bert_config_file={TINY_TF / 'bert_config.json'}"]


def google_tiny_config(**overrides) -> dict:
    """A bert_config.json (Google's keys) for task runners trained from scratch in tests."""
    values = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
              "max_position_embeddings": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
              "type_vocab_size": 2, "vocab_size": 99}
    return {**values, **overrides}


def read_eval_results(path) -> dict[str, str]:
    """Google's eval_results.txt: `key = value` lines."""
    return dict(line.split(" = ") for line in Path(path).read_text().splitlines())


def cli_error(capsys, argv: list[str]) -> str:
    """Run `bertkit argv` in-process for a user's mistake: it must exit 2 without a traceback,
    its last stderr line being `bertkit <command>: error: ...`; returns that line."""
    from bertkit.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    command = next(arg for arg in argv if not arg.startswith("-"))
    assert line.startswith(f"bertkit {command}: error: "), err
    return line


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a directory): equal before and after a
    failed command when it wrote nothing."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def tiny_shards(directory: Path, documents: int, sentences: int, words_per_sentence: int, config) -> Path:
    """Pre-training shards of a synthetic corpus over TINY_VOCAB's words, under directory/data."""
    from bertkit.data.pretraining import create_pretraining_data
    from bertkit.tokenization import FullTokenizer

    words = TINY_VOCAB.read_text(encoding="utf-8").split()[5:]
    with open(directory / "corpus.txt", "w", encoding="utf-8") as handle:
        for document in range(documents):
            for sentence in range(sentences):
                handle.write(" ".join(words[(document * 7 + sentence * 3 + i) % len(words)]
                                      for i in range(words_per_sentence)) + "\n")
            handle.write("\n")
    create_pretraining_data(str(directory / "corpus.txt"), directory / "data", FullTokenizer(TINY_VOCAB), config)
    return directory / "data"
