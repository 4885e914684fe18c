"""The precision a model runs in, chosen for the CPU (or GPU) in front of it, and proven on real text.

    from bertkit.inference.precision import choose_precision, apply_precision
    choice = choose_precision("auto", "cpu")       # PrecisionChoice(dtype="int8", reason="...", int8_weight_bits=7)
    model = apply_precision(model, choice)        # converted once; model.precision says what and why

    pipeline("outputs/mrpc", dtype="auto")        # the same, inside the pipeline (and --dtype on the CLI)

What `auto` picks, first match wins (docs/precision.md has the measurements behind each line):

    a CUDA device with bf16 (Ampere and later)   bf16 weights
    a CPU with amx_bf16 (Sapphire Rapids Xeons)  bf16 weights: 3.8x transformers fp32 on W1, 2.6x bertkit fp32
    a CPU with avx512_vnni                        int8, 8-bit weights: VNNI sums u8 x s8 products straight into
                                                  int32, so no int16 saturation and no bit to give up
    a CPU with avx2                               int8, 7-bit weights: fbgemm's AVX2 kernel sums pairs of
                                                  products in int16, which 7-bit weights keep from saturating
    anything else (or the ONNX backend)           fp32

avx512_bf16 without AMX (Cooper Lake, Zen 4) computes bf16 natively too, but bf16 has been measured
fastest only with AMX: there `auto` takes the VNNI int8 path, and an explicit `dtype="bf16"` runs
natively without a warning. avx_vnni (VNNI in AVX2 encoding) is not used by fbgemm, so it counts as AVX2.
A path that failed its fidelity gate on this machine (`check_fidelity`) or, for label outputs,
whose measured label flips exceed the gate (LABEL_FLIPS) is skipped, and the next one tried.

Explicit requests are honoured where they can run at all: bf16 on a CPU without native bf16 works
(torch emulates it, ~10x slower than fp32) with a warning; int8 runs on CPU only.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import torch

from bertkit.cpu import CpuInfo, cpu_info
from bertkit.devices import resolve_device
from bertkit.errors import ConfigError
from bertkit.tasks.feature_extraction import pool

logger = logging.getLogger("bertkit")

DTYPES = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class Gate:
    """What a reduced-precision path must keep, measured against the same model in fp32."""

    cosine_mean: float  # mean-pooled sentence vectors: mean cosine to fp32's over the sentences
    cosine_min: float  # ... and the worst sentence's
    label_flips: float  # a classifier's argmax labels that differ from fp32's, as a share of the inputs


# The fidelity gates (issue #31). bf16's are tight because bf16 should cost nothing measurable
# (measured on AMX: 0.99995 / 0.99992 with bf16 weights); int8's are the bars bertkit's int8 met
# before this module (bench_inference: 0.992 mean on MRPC dev with 7-bit weights).
GATES = {"bf16": Gate(cosine_mean=0.9999, cosine_min=0.999, label_flips=0.005),
         "int8": Gate(cosine_mean=0.99, cosine_min=0.98, label_flips=0.005)}

# Label flips (share of MRPC dev pairs whose label changes against fp32), by path. `auto` does not
# give label outputs (every task but feature-extraction) a path whose flips exceed its gate.
# docs/precision.md has the measurements and the command (tools/precision_fidelity.py --epochs 3 on
# the AVX2 EPYC: MiniLM fine-tuned on MRPC train for 3 epochs, 79.4% dev accuracy in fp32):
#   bf16     0 of 408 (bf16 emulated there: the same rounding as native bf16)
#   int8-w7  16 of 408 (3.9%)
#   int8-w8  10 of 408 (2.5%; on a CPU without VNNI, so fbgemm's AVX2 kernel may add saturation)
LABEL_FLIPS: dict[str, float] = {"bf16": 0.0, "int8-w7": 0.039, "int8-w8": 0.025}


@dataclass(frozen=True)
class PrecisionChoice:
    dtype: str  # "fp32", "bf16" or "int8"
    reason: str  # why, in words: the flag or the request behind it
    int8_weight_bits: int | None = None  # int8 only: 8 where VNNI, 7 otherwise
    requested: str = "auto"

    @property
    def path(self) -> str:
        """The name LABEL_FLIPS and the fidelity records use: fp32, bf16, int8-w7, int8-w8."""
        return f"int8-w{self.int8_weight_bits}" if self.dtype == "int8" else self.dtype

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        bits = f" ({self.int8_weight_bits}-bit weights)" if self.dtype == "int8" else ""
        return f"{self.dtype}{bits}: {self.reason}"


@dataclass(frozen=True)
class FidelityResult:
    path: str  # "bf16", "int8-w7", "int8-w8"
    sentences: int
    cosine_mean: float
    cosine_min: float
    passed: bool


# check_fidelity's results in this process, by path: `auto` skips a path whose latest check failed.
_checked: dict[str, FidelityResult] = {}


def _as_cpu(flags) -> CpuInfo:
    if flags is None:
        return cpu_info()
    if isinstance(flags, CpuInfo):
        return flags
    return CpuInfo("given flags", frozenset(flags), None, "given")


def int8_weight_bits(flags=None) -> int:
    """8 where fbgemm's VNNI kernels run (int32 sums), 7 elsewhere (AVX2's int16 pair sums)."""
    return 8 if _as_cpu(flags).has("avx512_vnni") else 7


def failed_paths(task: str | None = None) -> set[str]:
    """The paths `auto` must not pick: failed check_fidelity in this process, and for label outputs
    (any task but feature-extraction) those whose measured label flips exceed the gate."""
    failed = {path for path, result in _checked.items() if not result.passed}
    if task is not None and task != "feature-extraction":
        failed |= {path for path, flips in LABEL_FLIPS.items() if flips > GATES[path.split("-")[0]].label_flips}
    return failed


def choose_precision(requested: str | None = "auto", device=None, flags=None, *, task: str | None = None,
                     backend: str = "torch", failed: set[str] | None = None) -> PrecisionChoice:
    """The precision to run in. `requested` is auto / fp32 / bf16 / int8 (None: auto); `device` the
    torch device (default: a GPU when there is one); `flags` the CPU's flags (default: this CPU's,
    read once; tests pass a CpuInfo or a set of flag names); `task` the pipeline task, whose outputs
    decide which gates apply; `failed` the paths to skip (default: failed_paths(task))."""
    requested = "auto" if requested is None else str(requested).lower()
    if requested not in DTYPES:
        raise ConfigError(f"dtype={requested!r}: use one of {', '.join(DTYPES)}")
    if backend != "torch":
        if requested not in ("auto", "fp32"):
            raise ConfigError(f"dtype={requested!r} runs on the torch backend; the {backend} backend runs the "
                              "exported graph as it is (for int8 there: bertkit export --int8)")
        return PrecisionChoice("fp32", f"the {backend} backend runs the exported graph as it is", None, requested)
    device = resolve_device(device)
    failed = failed_paths(task) if failed is None else set(failed)
    if device.type == "cuda":
        return _choose_cuda(requested, device, failed)
    if device.type != "cpu":
        if requested in ("auto", "fp32"):
            return PrecisionChoice("fp32", f"{device.type} device: bertkit chooses only for CPUs and CUDA", None,
                                   requested)
        if requested == "int8":
            raise ConfigError(f"dtype='int8' runs on CPU only; drop device={str(device)!r} or use dtype='fp32'")
        return PrecisionChoice("bf16", "requested", None, requested)
    cpu = _as_cpu(flags)
    if requested == "fp32":
        return PrecisionChoice("fp32", "requested", None, requested)
    if requested == "bf16":
        if not cpu.native_bf16:
            logger.warning("dtype=bf16 on a CPU without native bf16 (no amx_bf16 or avx512_bf16: %s) is emulated "
                           "and about 10x slower than fp32; dtype=auto picks the fastest path here", cpu.model)
            return PrecisionChoice("bf16", "requested; emulated (no amx_bf16 or avx512_bf16)", None, requested)
        return PrecisionChoice("bf16", f"requested; native ({'amx_bf16' if cpu.has('amx_bf16') else 'avx512_bf16'})",
                               None, requested)
    bits = int8_weight_bits(cpu)
    why_bits = ("avx512_vnni: int32 sums, 8-bit weights cannot saturate" if bits == 8 else
                "no avx512_vnni: 7-bit weights keep fbgemm's int16 pair sums from saturating")
    if requested == "int8":
        return PrecisionChoice("int8", f"requested; {why_bits}", bits, requested)
    # auto: the fastest path the CPU runs natively, skipping any that failed its gate.
    candidates = []
    if cpu.has("amx_bf16"):
        candidates.append(PrecisionChoice("bf16", "amx_bf16: bf16 matmuls on AMX tiles, the fastest path measured",
                                          None, requested))
    if cpu.has("avx2") or cpu.has("avx512_vnni"):
        candidates.append(PrecisionChoice("int8", why_bits, bits, requested))
    skipped = []
    for candidate in candidates:
        if candidate.path in failed:
            skipped.append(candidate.path)
            continue
        if skipped:
            candidate = PrecisionChoice(candidate.dtype, f"{candidate.reason} ({', '.join(skipped)} failed "
                                        "its fidelity gate here)", candidate.int8_weight_bits, requested)
        return candidate
    if skipped:
        return PrecisionChoice("fp32", f"{', '.join(skipped)} failed its fidelity gate here", None, requested)
    return PrecisionChoice("fp32", "no avx2, avx512_vnni or amx_bf16: no faster path is safe here", None, requested)


def _choose_cuda(requested: str, device: torch.device, failed: set[str]) -> PrecisionChoice:
    if requested == "int8":
        raise ConfigError(f"dtype='int8' runs on CPU only (fbgemm kernels); use device='cpu' or dtype='bf16' on "
                          f"{device}")
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if requested == "fp32":
        return PrecisionChoice("fp32", "requested", None, requested)
    if requested == "bf16":
        if not native:
            logger.warning("dtype=bf16 on a GPU without bf16 support is emulated and slow; use dtype=fp32 there")
        return PrecisionChoice("bf16", "requested" + ("" if native else "; emulated on this GPU"), None, requested)
    if native and "bf16" not in failed:
        return PrecisionChoice("bf16", "CUDA device with native bf16", None, requested)
    return PrecisionChoice("fp32", "bf16 failed its fidelity gate here" if native else "this GPU has no native bf16",
                           None, requested)


def apply_precision(model: torch.nn.Module, choice: PrecisionChoice) -> torch.nn.Module:
    """Convert `model` (fp32, on CPU for int8) to `choice` once, in place, and record it on
    `model.precision`. An int8 checkpoint (`bertkit quantize`) stays as it is under auto or int8.

    bf16: every weight becomes bf16 once (faster than autocast, which converts the weights on
    every call). What could lose precision stays in fp32 arithmetic inside the kernels: torch's
    CPU and CUDA LayerNorm and softmax compute their statistics in fp32 for bf16 inputs, SDPA
    accumulates in fp32, and the pipeline turns every output to fp32 before postprocessing.
    """
    saved = model.config.quantization_config
    if saved is not None:
        if choice.dtype != "int8" and choice.requested != "auto":
            raise ConfigError(f"dtype={choice.requested!r}: this checkpoint is int8 (bertkit quantize); load the "
                              "fp32 model it was quantized from to run it in another precision")
        bits = saved.weight_bits
        if bits == 8 and int8_weight_bits() == 7:
            logger.warning("this int8 checkpoint has 8-bit weights, which can saturate fbgemm's int16 sums on a "
                           "CPU without avx512_vnni (%s): re-quantize it here with bertkit quantize", cpu_info().model)
        model.precision = PrecisionChoice("int8", "the checkpoint is int8 (bertkit quantize)", bits, choice.requested)
        return model
    if choice.dtype == "bf16":
        model.to(torch.bfloat16)
    elif choice.dtype == "int8":
        from bertkit.int8 import quantize

        if next(model.parameters()).device.type != "cpu":
            model.cpu()
        quantize(model, weight_bits=choice.int8_weight_bits or 7)
    model.precision = choice
    logger.info("precision %s", choice)
    return model


def model_precision(model) -> PrecisionChoice | None:
    """What apply_precision recorded on a model (None for a model it never saw)."""
    return getattr(model, "precision", None)


# -- fidelity ----------------------------------------------------------------------------------

# Sentences for a start-up check when the caller has none of its own: MRPC-style news sentences of
# mixed length, numbers and names included (the MRPC dev file itself is not shipped with bertkit).
CHECK_SENTENCES = (
    "He said the foodservice pie business doesn't fit the company's long-term growth strategy.",
    "Magnarelli said Racicot hated the Iraqi regime and looked forward to using his long years of training "
    "in the war.",
    "The dollar was at 116.92 yen against the yen, flat on the session, and at 1.2891 against the Swiss franc.",
    "The AFL-CIO is waiting until October to decide if it will endorse a candidate.",
    "No dates have been set for the civil or the criminal trial.",
    "Wal-Mart said it would check all of its million-plus domestic workers to ensure they were legally employed.",
    "The tech-laden Nasdaq Composite Index .IXIC shed 15 points, or 0.98 percent, to 1,492.",
    "Shares of Genentech, a much larger company with several products on the market, rose more than 2 percent.",
    "Sheena Young of Child, the national infertility support network, hoped the guidelines would lead to a more "
    "consistent approach in the NHS.",
    "I'm never going to forget this day.",
    "The search engine's shares fell 3.2% after the quarterly report, its first since the IPO in August.",
    "Rain is expected tomorrow.",
    "A federal judge on Thursday blocked the law, saying it likely violates the First Amendment's protection "
    "of free speech, and ordered a hearing for next month.",
    "The Senate approved the bill 88-11, sending it to the House, where passage is expected before the recess.",
    "Microsoft has said it plans to appeal the ruling, which it called a setback for innovation.",
    "Who is going to pay for all of this?",
)


def sentence_vectors(model, tokenizer, texts, max_seq_length: int = 128, batch_size: int = 32) -> torch.Tensor:
    """(N, H) fp32 mean-pooled vectors of `texts` from `model` (a BertModel or any head: its encoder)."""
    encoder = getattr(model, "bert", model)
    device = next(encoder.parameters()).device if any(True for _ in encoder.parameters()) else torch.device("cpu")
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = [tokenizer.encode(t, max_seq_length=max_seq_length) for t in texts[start:start + batch_size]]
            width = max(len(e["input_ids"]) for e in encoded)
            batch = {key: torch.tensor([e[key] + [0] * (width - len(e[key])) for e in encoded], device=device)
                     for key in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = encoder(**batch).sequence_output
            out.append(pool(hidden.float(), batch["attention_mask"], "mean").cpu())
    return torch.cat(out)


def converted_copy(model, choice: PrecisionChoice):
    """A copy of an fp32 `model` in `choice`'s precision (the original is left as it is)."""
    return apply_precision(copy.deepcopy(model), choice)


def check_fidelity(model, tokenizer, choice: PrecisionChoice, texts=None, *, record: bool = True,
                   max_seq_length: int = 128) -> FidelityResult:
    """Mean-pooled vectors of `texts` (default CHECK_SENTENCES) from the fp32 `model` and from a copy
    in `choice`'s precision; passed = the cosines meet GATES. With `record`, `auto` in this process
    skips the path if it failed. Cost: two passes over the texts (16 sentences: well under a second
    natively, a few seconds for emulated bf16)."""
    if choice.dtype == "fp32":
        raise ConfigError("check_fidelity compares a reduced precision with fp32; fp32 needs no check")
    texts = list(texts or CHECK_SENTENCES)
    reference = sentence_vectors(model, tokenizer, texts, max_seq_length)
    candidate = sentence_vectors(converted_copy(model, choice), tokenizer, texts, max_seq_length)
    cosines = torch.nn.functional.cosine_similarity(reference, candidate, dim=-1)
    gate = GATES[choice.dtype]
    result = FidelityResult(choice.path, len(texts), float(cosines.mean()), float(cosines.min()),
                            bool(cosines.mean() >= gate.cosine_mean and cosines.min() >= gate.cosine_min))
    if record:
        _checked[choice.path] = result
    (logger.info if result.passed else logger.warning)(
        "fidelity of %s on %d sentences: cosine to fp32 mean %.5f, min %.5f (gate %.4f / %.4f): %s", choice.path,
        result.sentences, result.cosine_mean, result.cosine_min, gate.cosine_mean, gate.cosine_min,
        "passed" if result.passed else "FAILED, auto will not pick it")
    return result


def check_auto(directory, device=None, task: str | None = None) -> FidelityResult | None:
    """What a server runs at start-up before loading `directory` with dtype=auto: check_fidelity of
    the path auto would pick, on CHECK_SENTENCES, recorded so that auto skips it if it failed.
    None when there is nothing to check (auto picks fp32, the path was checked already, or the
    checkpoint is int8). Cost: one more load of the encoder and two passes over 16 sentences,
    about a second next to the seconds a server's start takes (docs/precision.md)."""
    from bertkit.heads import BertModel
    from bertkit.tokenization import FullTokenizer

    if str(directory).endswith(".onnx"):  # an exported graph runs as exported (the ONNX backend)
        return None
    choice = choose_precision("auto", device, task=task)
    if choice.dtype == "fp32" or choice.path in _checked:
        return None
    model = BertModel.from_pretrained(directory)
    if model.config.quantization_config is not None:
        return None
    if device is not None or torch.cuda.is_available():
        model.to(device or "cuda")
    return check_fidelity(model.eval(), FullTokenizer.from_pretrained(directory), choice)


def label_flips(fp32_logits, other_logits) -> float:
    """The share of rows whose argmax differs between two (N, C) logit arrays."""
    a = torch.as_tensor(fp32_logits).float().argmax(-1)
    b = torch.as_tensor(other_logits).float().argmax(-1)
    return float((a != b).float().mean())
