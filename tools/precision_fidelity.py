"""Measure the fidelity gates of every precision path on MRPC dev, on this CPU (docs/precision.md).

    python tools/precision_fidelity.py --output docs/precision_fidelity.json
    python tools/precision_fidelity.py --classifier DIR     # reuse a fine-tuned MRPC classifier

1. Sentence vectors: the packaged all-MiniLM-L6-v2, mean-pooled, each path against fp32 over the 816
   MRPC dev sentences (bf16 emulated where the CPU has no native bf16: slow, but the same numbers).
2. Label flips: MiniLM fine-tuned on MRPC train for --epochs (the runner's defaults otherwise), then
   the 408 dev pairs classified in fp32 and in each path; a flip is a pair whose label changes.
   The result is what inference.precision.LABEL_FLIPS records.
Paths: bf16 (weights converted once), int8 with 7-bit weights (AVX2-safe), int8 with 8-bit weights
(the VNNI path; on a CPU without VNNI its numbers still show the weights' rounding, but fbgemm's AVX2
kernel may saturate, which is exactly what the AVX2 figure then includes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertkit.cli.main import main as bertkit_main  # noqa: E402
from bertkit.cpu import cpu_info  # noqa: E402
from bertkit.heads import BertModel  # noqa: E402
from bertkit.inference.pipeline import pipeline  # noqa: E402
from bertkit.inference.precision import (GATES, PrecisionChoice, converted_copy, label_flips,  # noqa: E402
                                         sentence_vectors)
from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402

PATHS = {"bf16": PrecisionChoice("bf16", "measured", None, "bf16"),
         "int8-w7": PrecisionChoice("int8", "measured", 7, "int8"),
         "int8-w8": PrecisionChoice("int8", "measured", 8, "int8")}


def mrpc_dev(data: Path) -> list[tuple[str, str, int]]:
    with open(data / "glue" / "MRPC" / "dev.tsv", encoding="utf-8-sig") as handle:
        next(handle)
        return [(f[3], f[4], int(f[0])) for f in (line.rstrip("\n").split("\t") for line in handle)]


def vector_gates(texts: list[str], paths: list[str]) -> dict:
    model = BertModel.from_pretrained(minilm_dir()).eval()
    tokenizer = FullTokenizer.from_pretrained(minilm_dir())
    reference = sentence_vectors(model, tokenizer, texts)
    out = {}
    for name in paths:
        start = time.perf_counter()
        vectors = sentence_vectors(converted_copy(model, PATHS[name]), tokenizer, texts)
        cosines = torch.nn.functional.cosine_similarity(reference, vectors, dim=-1)
        gate = GATES[PATHS[name].dtype]
        out[name] = {"sentences": len(texts), "cosine_mean": float(cosines.mean()), "cosine_min": float(cosines.min()),
                     "passed": bool(cosines.mean() >= gate.cosine_mean and cosines.min() >= gate.cosine_min),
                     "seconds": round(time.perf_counter() - start, 1)}
        print(f"vectors {name}: {out[name]}", flush=True)
    return out


def fine_tune(data: Path, output: Path, epochs: float, seed: int, learning_rate: float) -> None:
    code = bertkit_main(["-q", "run_classifier", "--task_name=MRPC", "--do_train", "--do_eval",
                         f"--data_dir={data / 'glue' / 'MRPC'}", f"--init_checkpoint={minilm_dir()}",
                         "--max_seq_length=128", "--train_batch_size=32", f"--learning_rate={learning_rate}",
                         f"--num_train_epochs={epochs}", f"--seed={seed}", "--save_checkpoints_steps=100000",
                         "--no_progress", "--cache_dir=none", f"--output_dir={output}"])
    if code:
        raise SystemExit(f"fine-tuning failed ({code})")


def flip_gates(classifier: Path, pairs: list[tuple[str, str, int]], paths: list[str]) -> dict:
    p = pipeline(classifier, dtype="fp32", progress=False)
    inputs = [{"text": a, "text_pair": b} for a, b, _ in pairs]
    labels = torch.tensor([y for _, _, y in pairs])

    def logits():
        answers = p(inputs, top_k=None)
        return torch.tensor([[next(a["score"] for a in answer if a["label"] == label) for label in p.labels]
                             for answer in answers])

    fp32_model = p.model
    reference = logits()
    out = {"fp32": {"accuracy": float((reference.argmax(-1) == labels).float().mean())}}
    for name in paths:
        p.model = converted_copy(fp32_model, PATHS[name])
        scores = logits()
        out[name] = {"pairs": len(pairs), "label_flips": label_flips(reference, scores),
                     "accuracy": float((scores.argmax(-1) == labels).float().mean()),
                     "passed": label_flips(reference, scores) <= GATES[PATHS[name].dtype].label_flips}
        print(f"labels {name}: {out[name]}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=None, help="write the measurements as JSON here")
    parser.add_argument("--classifier", default=None, help="a fine-tuned MRPC classifier (default: fine-tune one)")
    parser.add_argument("--keep_classifier", default=None, help="fine-tune into this directory and keep it")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--skip_vectors", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or minilm_dir() is None:
        raise SystemExit("needs the shared data (BERTKIT_SHARED_DATA) and the packaged MiniLM")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    pairs = mrpc_dev(data)
    result = {"cpu": cpu_info().as_dict(), "torch": torch.__version__, "gates": {k: vars(v) for k, v in GATES.items()}}
    if not args.skip_vectors:
        result["vectors"] = vector_gates([t for a, b, _ in pairs for t in (a, b)], paths)
    with tempfile.TemporaryDirectory() as tmp:
        classifier = Path(args.classifier or args.keep_classifier or Path(tmp) / "mrpc")
        if not args.classifier:
            start = time.perf_counter()
            fine_tune(data, classifier, args.epochs, args.seed, args.learning_rate)
            result["fine_tune"] = {"epochs": args.epochs, "seed": args.seed, "learning_rate": args.learning_rate,
                                   "seconds": round(time.perf_counter() - start, 1)}
        result["labels"] = flip_gates(classifier, pairs, paths)
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
