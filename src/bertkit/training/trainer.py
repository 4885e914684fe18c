"""One training loop for every task: fine-tuning (GLUE, SQuAD, NER, multiple choice), pre-training
and distillation.

The loop knows nothing about tasks. A batch is a dict of tensors passed as `model(**batch)`; the
model returns an object with `.loss`; what evaluation collects per row is its `.logits` (or what
the `eval_step(output, batch)` hook returns, as Lightning's validation_step), labels are the batch
keys in `args.label_names`, and `compute_metrics(predictions, labels) -> dict` turns them into
numbers. `evaluate()` returns the metrics together with the predictions they were computed from. Everything else is here once:

* AdamW with Google's decay groups and schedule, gradient clipping and accumulation, fp32 or bf16;
* evaluation every epoch or every N steps, written as Google's eval_results.txt and to
  metrics.jsonl, TensorBoard and a PNG of the curves (training/logging.py);
* checkpoints that resume exactly, mid-epoch included, and a clear stop on a NaN loss;
* DistributedDataParallel when launched by torchrun, with the same results as one process.

Checkpoint layout, `output_dir/checkpoint-<step>/`, written into a temp dir then renamed into place:
    config.json, model.safetensors (, vocab.txt)   the model, HF layout (save_pretrained)
    optimizer.pt, scheduler.pt                     their state_dicts
    rng_state_<rank>.pt                            python, numpy, torch and cuda RNG states, and
                                                   the model's shared generators (LayerDrop's)
    trainer_state.json                             step, epoch, position in the epoch, loss sums
Every .pt file holds only tensors and plain containers: torch.load(..., weights_only=True) reads it.
Resuming reads a checkpoint whole and checks it against the model before using any of it; a
damaged one (truncated, unreadable, of another model) is skipped for the newest intact one, with
a warning, or stops the run with resume="strict". A full disk while saving stops the run with the
previous checkpoint kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import pickle
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bertkit.cpu import read_cpu_info
from bertkit.data.batching import LengthGroupedBatchSampler, PaddingCollator, dataset_lengths
from bertkit.devices import resolve_device
from bertkit.errors import BertkitError, CheckpointError, ConfigError
from bertkit.io_utils import atomic_directory, atomic_write
from bertkit.training.logging import MetricsLogger, write_eval_results
from bertkit.training.optim import SCHEDULES, create_optimizer, get_scheduler

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE_FILE = "trainer_state.json"
# What every checkpoint holds besides rng_state_<rank>.pt (of which rank 0's is always there).
CHECKPOINT_FILES = (TRAINER_STATE_FILE, "config.json", "model.safetensors", "optimizer.pt", "scheduler.pt",
                    "rng_state_0.pt")


class TrainingError(BertkitError):
    """Training cannot go on (a NaN or infinite loss); the message says what to change."""


@dataclass
class TrainingArguments:
    output_dir: str
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides num_train_epochs
    # Batch sizes are global, over all processes, as Google's flags: the same command line trains
    # the same model on 1 or N processes. An optimizer step sees train_batch_size * accumulation.
    train_batch_size: int = 32
    eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_proportion: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_proportion
    scheduler: str = "linear"  # see optim.SCHEDULES
    scheduler_kwargs: dict = field(default_factory=dict)  # num_cycles, power, lr_end
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.999)
    bias_correction: bool = True  # False: Google's AdamWeightDecayOptimizer
    max_grad_norm: float | None = 1.0  # None or 0: no clipping
    seed: int = 42
    # bf16 autocast (weights and optimizer stay fp32): True, False, or "auto" = on only where bf16 is
    # native (a CPU with amx_bf16 or avx512_bf16, a CUDA device with bf16). Off by default: a bf16
    # fine-tune has not been measured against fp32 on AMX yet (docs/precision.md).
    bf16: bool | str = False
    device: str = "auto"  # "auto": the local GPU when there is one, else the CPU
    eval_steps: int | None = None  # None: evaluate at the end of every epoch
    save_checkpoints_steps: int | None = 1000  # None: no checkpoints, only the final model
    save_total_limit: int | None = None  # keep only the newest N checkpoints
    logging_steps: int | None = None  # None: about 20 log lines per run, so every run draws a curve
    progress: bool = True  # a tqdm bar
    tensorboard: bool = True  # when tensorboard is installed
    plot: bool = True  # training_curves.png
    group_by_length: bool = True
    pad_to_max_length: bool = False  # Google's static padding; needs max_seq_length
    max_seq_length: int | None = None
    drop_last: bool = False
    dataloader_num_workers: int = 0
    label_names: tuple[str, ...] = ("labels",)  # batch keys given to compute_metrics

    def __post_init__(self):
        positive = ("learning_rate", "num_train_epochs", "train_batch_size", "eval_batch_size",
                    "gradient_accumulation_steps")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrainingArguments.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("max_steps", "eval_steps", "save_checkpoints_steps", "save_total_limit", "warmup_steps",
                     "logging_steps"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "warmup_steps" else 1):
                raise ConfigError(f"TrainingArguments.{name} must be None or at least "
                                  f"{0 if name == 'warmup_steps' else 1}, got {value!r}")
        if not 0 <= self.warmup_proportion <= 1:
            raise ConfigError(f"TrainingArguments.warmup_proportion must be between 0 and 1, "
                              f"got {self.warmup_proportion!r}")
        if self.scheduler not in SCHEDULES:
            raise ConfigError(f"TrainingArguments.scheduler {self.scheduler!r} is not one of: {', '.join(SCHEDULES)}")
        if self.pad_to_max_length and self.max_seq_length is None:
            raise ConfigError("TrainingArguments.pad_to_max_length needs max_seq_length")
        self.label_names = tuple(self.label_names)
        self.adam_betas = tuple(self.adam_betas)


@dataclass
class TrainerState:
    """Where training is: saved in every checkpoint and restored on resume."""

    global_step: int = 0  # optimizer steps done
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already trained on
    loss_sum: float = 0.0  # sum of step losses, for the run's mean training loss
    log_loss_sum: float = 0.0  # since the last log line, so a resumed run logs the same means
    log_steps: int = 0
    last_eval_step: int | None = None  # so a run resumed at its last step does not evaluate twice


@dataclass
class PredictionOutput:
    predictions: np.ndarray | tuple[np.ndarray, ...]  # in dataset order
    label_ids: np.ndarray | tuple[np.ndarray, ...] | None
    metrics: dict[str, float]


class EvalResults(dict):
    """evaluate()'s metrics, with the predictions (and labels) they were computed from."""

    predictions: np.ndarray | tuple[np.ndarray, ...] | None = None
    label_ids: np.ndarray | tuple[np.ndarray, ...] | None = None


@dataclass
class TrainOutput:
    global_step: int
    training_loss: float  # mean loss over all optimizer steps
    metrics: dict[str, float]  # the last evaluation's, empty without an eval set


# ---------------------------------------------------------------------------------------------
# Seeds, RNG state and processes.


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all GPUs too)."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be between 0 and 2**32 - 1 (numpy's range), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG's state as tensors and plain lists, so that weights_only torch.load reads it."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(keys), gauss],
        "numpy": {"kind": kind, "keys": np_keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def init_distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); joins the process group when torchrun started several processes.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; init_process_group
    reads them. NCCL needs one GPU per process; on CPU gloo does the all-reduces.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes in bf16 natively (AVX-512 BF16 or AMX); None where it cannot be told.
    Without either, bf16 autocast converts every operand in software: on an AVX2 EPYC a BERT-Tiny
    training step took 10x as long as in fp32."""
    info = read_cpu_info(cpuinfo)
    return None if info.source == "torch" else info.native_bf16


def resolve_bf16(bf16: bool | str, device: torch.device) -> bool:
    """TrainingArguments.bf16 -> whether to autocast: "auto" is on where bf16 is native only."""
    if isinstance(bf16, str):
        if bf16.lower() != "auto":
            raise ConfigError(f"TrainingArguments.bf16={bf16!r}: use True, False or 'auto'")
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported()
        else:
            native = device.type == "cpu" and bool(cpu_has_native_bf16())
        logger.info("bf16=auto: %s", "on (native bf16 here)" if native else "off (no native bf16 here)")
        return native
    return bool(bf16)


def _concat(arrays: list[np.ndarray], pad_value: float = -100) -> np.ndarray:
    """Concatenate along dim 0, padding later dims (dynamic padding gives batches different T)."""
    shape = np.max([a.shape for a in arrays], axis=0)
    if all(a.shape[1:] == tuple(shape[1:]) for a in arrays):
        return np.concatenate(arrays)
    out = np.full((sum(len(a) for a in arrays), *shape[1:]), pad_value, dtype=arrays[0].dtype)
    row = 0
    for a in arrays:
        out[(slice(row, row + len(a)), *(slice(0, n) for n in a.shape[1:]))] = a
        row += len(a)
    return out


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _unwrap(parts: list[np.ndarray], was_tuple: bool):
    return tuple(parts) if was_tuple else parts[0]


# ---------------------------------------------------------------------------------------------


class Trainer:
    """Trains, evaluates and predicts with any model whose forward returns `.loss`.

    train_dataset / eval_dataset: map-style datasets of feature dicts (data.batching.FeatureDataset).
    collate_fn: examples -> dict of tensors; default PaddingCollator (dynamic padding, or static
        with args.pad_to_max_length).
    compute_metrics(predictions, labels) -> dict: numpy arrays (tuples for several prediction or
        label keys) in dataset order.
    eval_step(output, batch) -> tensor or tuple of tensors, one row per example: what evaluation
        and prediction collect (default `output.logits`; e.g. `lambda o, b: (o.start_logits,
        o.end_logits)` for SQuAD). It sees the batch, so it can score rows against their labels.
    tokenizer: saved with the model (vocab.txt) in checkpoints and the final model.
    """

    def __init__(self, model: torch.nn.Module, args: TrainingArguments, train_dataset: Dataset | None = None,
                 eval_dataset: Dataset | None = None, collate_fn: Callable | None = None,
                 compute_metrics: Callable[..., dict] | None = None,
                 eval_step: Callable[[Any, dict], Any] | None = None, tokenizer=None):
        self.args = args
        self.rank, self.world_size, local_rank = init_distributed()
        self.is_main = self.rank == 0
        self.device = resolve_device(args.device, local_rank=local_rank, what="--device")
        for name in ("train_batch_size", "eval_batch_size"):
            if getattr(args, name) % self.world_size:
                raise ConfigError(f"TrainingArguments.{name}={getattr(args, name)} is the global batch size "
                                  f"and must be divisible by the {self.world_size} processes")
        self.bf16 = resolve_bf16(args.bf16, self.device)
        if self.bf16 and self.device.type == "cpu" and cpu_has_native_bf16() is False:
            logger.warning("bf16 autocast on a CPU without bf16 instructions (no avx512_bf16 or amx_bf16 in "
                           "/proc/cpuinfo) is emulated and several times slower than fp32: leave bf16 off here")
        self.model = model.to(self.device)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.collate_fn = collate_fn or PaddingCollator(args.max_seq_length, args.pad_to_max_length)
        self.compute_metrics = compute_metrics
        self.eval_step = eval_step
        self.tokenizer = tokenizer
        self.output_dir = Path(args.output_dir)
        self.state = TrainerState()
        self._metrics: MetricsLogger | None = None  # open while train() runs
        self._batches_per_epoch: int | None = None

    # -- training --------------------------------------------------------------------------

    def train(self, resume: bool | str | os.PathLike = False) -> TrainOutput:
        """Train; `resume=True` continues from the newest intact checkpoint in output_dir (starting
        fresh when there is none; a damaged newer one is skipped with a warning), `resume="strict"`
        from the newest one, stopping with a CheckpointError if it is damaged, and a path from that
        checkpoint."""
        args = self.args
        if self.train_dataset is None:
            raise ConfigError("Trainer.train() needs a train_dataset")
        sampler = LengthGroupedBatchSampler(
            len(self.train_dataset), args.train_batch_size // self.world_size,
            lengths=dataset_lengths(self.train_dataset) if args.group_by_length else None,
            seed=args.seed, num_replicas=self.world_size, rank=self.rank, drop_last=args.drop_last)
        if sampler.num_batches == 0:
            raise ConfigError(f"{len(self.train_dataset)} training examples make no full batch of "
                              f"{args.train_batch_size}; lower train_batch_size or set drop_last=False")
        loader = self._loader(self.train_dataset, sampler)
        self._batches_per_epoch = sampler.num_batches
        accumulation = args.gradient_accumulation_steps
        steps_per_epoch = math.ceil(sampler.num_batches / accumulation)
        total_steps = args.max_steps or math.ceil(steps_per_epoch * args.num_train_epochs)

        optimizer = create_optimizer(self.model, args.learning_rate, args.weight_decay, args.adam_epsilon,
                                     args.adam_betas, args.bias_correction)
        scheduler = get_scheduler(args.scheduler, optimizer, total_steps, args.warmup_steps,
                                  args.warmup_proportion, **args.scheduler_kwargs)
        checkpoint = self._resume(resume, optimizer, scheduler, sampler.num_batches)
        if checkpoint is not None:
            self._info("Resuming from %s: step %d, epoch %d, batch %d", checkpoint, self.state.global_step,
                        self.state.epoch, self.state.batch)
        else:
            if self._checkpoints() and resume is False:
                logger.warning("%s already holds checkpoints of an earlier run (newest: %s); this run starts from "
                               "step 0 and resume=True would pick whichever is newest: use a new output_dir",
                               self.output_dir, self._checkpoints()[-1][1].name)
            self.state = TrainerState()
            # A different seed per process gives each its own dropout masks; the weights are
            # rank 0's anyway, as DDP broadcasts them. The shared generators (LayerDrop's choice
            # of layers) get the same seed everywhere, as every process must draw alike from them.
            set_seed(args.seed + self.rank)
            for i, generator in enumerate(self._shared_generators()):
                generator.manual_seed(args.seed + i)
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.output_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"):  # left by a killed save
                shutil.rmtree(stale, ignore_errors=True)
            self._metrics = MetricsLogger(self.output_dir, args.tensorboard, args.plot,
                                          truncate_after=self.state.global_step if checkpoint else -1)
        model = self.model
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Without find_unused_parameters DDP waits for every parameter's gradient, and a step
            # that leaves some without one (LayerDrop, a loss weight of 0) fails; the model knows
            # whether it can, and the search costs a graph traversal per step when it cannot.
            model = DistributedDataParallel(
                model, device_ids=device_ids,
                find_unused_parameters=bool(getattr(self.model, "may_leave_parameters_unused", False)))

        self._info("Training: %d examples, %d steps (%d per epoch), global batch %d x %d accumulation, "
                    "%d process(es) on %s", len(self.train_dataset), total_steps, steps_per_epoch,
                    args.train_batch_size, accumulation, self.world_size, self.device)
        bar = tqdm(total=total_steps, initial=self.state.global_step, desc="train", unit="step",
                   disable=not (args.progress and self.is_main), dynamic_ncols=True)
        metrics: dict[str, float] = {}
        redirect = logging_redirect_tqdm() if not bar.disable else contextlib.nullcontext()
        try:
            with redirect:
                clock = _Speed()
                model.train()
                while self.state.global_step < total_steps:
                    sampler.set_epoch(self.state.epoch, start=self.state.batch)
                    step_loss = torch.zeros((), device=self.device)
                    for batch in loader:
                        # Accumulation groups are counted from the start of the epoch, so that
                        # resuming (always at a group boundary) regroups batches identically; the
                        # epoch's last group may be short and its losses are scaled by its size.
                        group_start = self.state.batch - self.state.batch % accumulation
                        group_size = min(accumulation, sampler.num_batches - group_start)
                        self.state.batch += 1
                        step_done = self.state.batch == group_start + group_size
                        clock.examples += _batch_size(batch) * self.world_size
                        # Gradients are all-reduced only on the group's last backward.
                        sync = contextlib.nullcontext() if step_done or self.world_size == 1 else model.no_sync()
                        with sync:
                            loss = self._training_loss(model, batch)
                            (loss / group_size).backward()
                        step_loss += loss.detach() / group_size
                        if not step_done:
                            continue
                        epoch_done = self._optimizer_step(model, optimizer, scheduler, step_loss,
                                                          sampler.num_batches, total_steps, bar, clock)
                        step_loss = torch.zeros((), device=self.device)
                        step = self.state.global_step
                        eval_due = (step % args.eval_steps == 0) if args.eval_steps else epoch_done
                        with clock.paused():
                            if eval_due and self.eval_dataset is not None:
                                metrics = self.evaluate()
                                model.train()
                            if args.save_checkpoints_steps and step % args.save_checkpoints_steps == 0:
                                self._save_checkpoint(optimizer, scheduler, sampler.num_batches)
                        if step >= total_steps:
                            break
            if self.eval_dataset is not None and self.state.last_eval_step != self.state.global_step:
                metrics = self.evaluate()
            if self.is_main:
                with self._disk_full_is_an_error(self.output_dir):
                    self.model.save_pretrained(self.output_dir, tokenizer=self.tokenizer)
                self._info("Saved the final model to %s", self.output_dir)
        finally:
            bar.close()
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
        return TrainOutput(self.state.global_step, self.state.loss_sum / max(1, self.state.global_step), metrics)

    def _training_loss(self, model, batch: dict) -> torch.Tensor:
        with self._autocast():
            output = model(**self._to_device(batch))
        if output.loss is None:
            raise ConfigError(f"the model returned no loss for a training batch with keys {sorted(batch)}; "
                              f"the batch must hold its labels ({', '.join(self.args.label_names)})")
        return output.loss.float()

    def _optimizer_step(self, model, optimizer, scheduler, step_loss, batches_per_epoch, total_steps, bar,
                        clock) -> bool:
        """Check, clip, step, then advance the state and log. Returns whether the epoch ended."""
        args, state = self.args, self.state
        loss = self._mean_over_processes(step_loss)
        # Gradients are identical on every process after the all-reduce, and so is the averaged
        # loss: every process takes the same branch here and none waits for the others forever.
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm or math.inf))
        for name, value in (("loss", loss), ("gradient norm", grad_norm)):
            if not math.isfinite(value):
                raise self._non_finite_error(name, value, scheduler.get_last_lr()[0])
        learning_rate = scheduler.get_last_lr()[0]  # the rate this step uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        state.global_step += 1
        state.loss_sum += loss
        state.log_loss_sum += loss
        state.log_steps += 1
        epoch_done = state.batch == batches_per_epoch
        if epoch_done:
            state.epoch += 1
            state.batch = 0
        clock.steps += 1
        bar.update(1)
        bar.set_postfix({"loss": f"{loss:.4f}", "lr": f"{learning_rate:.2e}",
                         "examples/s": f"{clock.examples_per_second():.1f}"}, refresh=False)
        logging_steps = args.logging_steps or max(1, total_steps // 20)
        if state.global_step % logging_steps == 0 or state.global_step == total_steps:
            record = {"event": "train", "step": state.global_step,
                      "epoch": round(state.epoch + state.batch / batches_per_epoch, 4),
                      "loss": state.log_loss_sum / state.log_steps, "learning_rate": learning_rate,
                      "grad_norm": grad_norm, "steps_per_second": clock.steps_per_second(),
                      "examples_per_second": clock.examples_per_second()}
            state.log_loss_sum, state.log_steps = 0.0, 0
            clock.reset()
            self._log(record)
            self._info("step %d/%d | epoch %.2f | loss %.4f | lr %.3e | %.2f it/s | %.1f examples/s",
                        record["step"], total_steps, record["epoch"], record["loss"], learning_rate,
                        record["steps_per_second"], record["examples_per_second"])
        return epoch_done

    def _non_finite_error(self, what: str, value: float, learning_rate: float) -> TrainingError:
        checkpoints = self._checkpoints()
        kept = (f"the last good checkpoint, {checkpoints[-1][1]}, is kept: fix the settings and resume "
                "from it with resume=True" if checkpoints else "no checkpoint was saved before it")
        precision = "bf16 autocast: try fp32 (bf16=False)" if self.bf16 else "fp32"
        return TrainingError(
            f"the training {what} is {value} at optimizer step {self.state.global_step + 1} (epoch {self.state.epoch}, "
            f"learning rate {learning_rate:.3e}, {precision}); training stopped. Try a lower learning_rate, "
            f"more warmup or a max_grad_norm, and check the data for bad labels; {kept}")

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, dataset: Dataset | None = None, prefix: str = "eval",
                 compute_metrics: Callable[..., dict] | None = None) -> "EvalResults":
        """Loss and metrics over `dataset` (default: the eval set), as Google reports them:
        `<prefix>_<metric>`, `<prefix>_loss` (mean over examples), `loss` (mean over batches) and
        `global_step`, also written to output_dir/<prefix>_results.txt. `compute_metrics` scores
        this dataset (default: the Trainer's, which scores the eval set). The returned dict also
        carries `.predictions` and `.label_ids`, so that nothing is predicted twice."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None:
            raise ConfigError("Trainer.evaluate() needs a dataset: pass one or give the Trainer an eval_dataset")
        output = self._prediction_loop(dataset, prefix, compute_metrics or self.compute_metrics)
        results = EvalResults({**output.metrics, "global_step": self.state.global_step})
        results.predictions, results.label_ids = output.predictions, output.label_ids
        self.state.last_eval_step = self.state.global_step
        if self.is_main:
            write_eval_results(self.output_dir / f"{prefix}_results.txt", results)
            shown = " | ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}"
                               for k, v in sorted(results.items()))
            logger.info("%s at step %d: %s", prefix, self.state.global_step, shown)
        epoch = self.state.epoch + self.state.batch / self._batches_per_epoch if self._batches_per_epoch else 0
        # `loss` (Google's batch mean) stays in the .txt only: TensorBoard would file it beside eval_loss.
        self._log({"event": prefix, "step": self.state.global_step, "epoch": round(epoch, 4),
                   **{k: v for k, v in results.items() if k not in ("global_step", "loss")}})
        return results

    def predict(self, dataset: Dataset) -> PredictionOutput:
        """Predictions (and labels and metrics, when the dataset has labels) in dataset order."""
        return self._prediction_loop(dataset, "predict", self.compute_metrics)

    def _prediction_loop(self, dataset: Dataset, prefix: str, compute_metrics) -> PredictionOutput:
        sampler = LengthGroupedBatchSampler(len(dataset), self.args.eval_batch_size // self.world_size,
                                            shuffle=False, num_replicas=self.world_size, rank=self.rank,
                                            even_shards=False)
        batches = sampler.batches(0)
        loader = self._loader(dataset, batches)
        # The bare model: DDP's forward would wait for the other processes, which may have one
        # batch fewer here.
        model = self.model
        was_training = model.training
        model.eval()
        indices, predictions, labels, losses = [], [], [], []
        pred_is_tuple = label_is_tuple = False
        # A bar for evaluations that take more than a few seconds (NER's eng.testa used to be
        # silent for minutes); short ones would only add noise between the training log lines.
        bar = tqdm(total=len(batches), desc=prefix, unit="batch", leave=False,
                   disable=not (self.args.progress and self.is_main and len(batches) >= 20))
        with torch.no_grad(), self._autocast(), bar:
            for batch_indices, batch in zip(batches, loader):
                bar.update()
                output = model(**self._to_device(batch))
                prediction = self.eval_step(output, batch) if self.eval_step else _default_prediction(output)
                pred_is_tuple = isinstance(prediction, tuple)
                # bf16 has no numpy dtype; integer predictions (argmax ids) stay integers.
                predictions.append([(p.float() if p.is_floating_point() else p).cpu().numpy()
                                    for p in _as_tuple(prediction)])
                names = [n for n in self.args.label_names if n in batch]
                label_is_tuple = len(names) > 1
                if names:
                    labels.append([batch[n].cpu().numpy() for n in names])
                if output.loss is not None:  # with its global batch number, to regroup the processes' parts
                    losses.append((len(indices), float(output.loss), len(batch_indices)))
                indices.append(batch_indices)
        model.train(was_training)

        if self.world_size > 1:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, (indices, predictions, labels, losses, pred_is_tuple, label_is_tuple))
            indices, predictions, labels, losses = ([x for part in gathered for x in part[i]] for i in range(4))
            pred_is_tuple, label_is_tuple = gathered[0][4:]  # rank 0 always has a batch
        order = np.argsort(np.concatenate(indices), kind="stable")
        pred_arrays = [_concat([p[k] for p in predictions])[order] for k in range(len(predictions[0]))]
        label_arrays = [_concat([p[k] for p in labels])[order] for k in range(len(labels[0]))] if labels else None
        preds_out = _unwrap(pred_arrays, pred_is_tuple)
        labels_out = _unwrap(label_arrays, label_is_tuple) if label_arrays else None

        metrics = {}
        if losses:
            metrics[f"{prefix}_loss"] = sum(loss * n for _, loss, n in losses) / sum(n for _, _, n in losses)
            # Google's estimator `loss`: the mean over batches of each (global) batch's mean loss.
            batch_sums: dict[int, list[float]] = {}
            for number, loss, n in losses:
                total = batch_sums.setdefault(number, [0.0, 0])
                total[0] += loss * n
                total[1] += n
            metrics["loss"] = sum(total / n for total, n in batch_sums.values()) / len(batch_sums)
        if compute_metrics is not None and labels_out is not None:
            computed = compute_metrics(preds_out, labels_out)
            metrics.update({f"{prefix}_{k}": float(v) for k, v in computed.items()})
        return PredictionOutput(preds_out, labels_out, metrics)

    # -- checkpoints -----------------------------------------------------------------------

    def _checkpoints(self) -> list[tuple[int, Path]]:
        """The checkpoint directories in output_dir, oldest first. Saves are atomic, so each was
        complete when written; resuming checks it again before using it."""
        found = []
        for path in self.output_dir.glob(f"{CHECKPOINT_PREFIX}*"):
            match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
            if match and path.is_dir():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def _shared_generators(self) -> list[torch.Generator]:
        """The generators whose draws every process must make alike (the encoder's choice of layers
        to skip): a module opts in with a `shared_generator` attribute."""
        return [m.shared_generator for m in self.model.modules()
                if isinstance(getattr(m, "shared_generator", None), torch.Generator)]

    def _resume(self, resume, optimizer, scheduler, batches_per_epoch: int) -> Path | None:
        """Load the checkpoint `resume` asks for into the model, optimizer, scheduler, RNGs and
        state, and return it; None: start from step 0."""
        if resume is False or resume is None:
            return None
        if resume is True or resume == "strict":
            candidates = [path for _, path in reversed(self._checkpoints())]
            if not candidates:
                self._info("resume=%r but %s has no checkpoint yet: starting from step 0", resume, self.output_dir)
                return None
        else:
            path = Path(resume)
            if not (path / TRAINER_STATE_FILE).is_file():
                raise CheckpointError(f"{path} is not a complete Trainer checkpoint (no {TRAINER_STATE_FILE}); "
                                      f"pass resume=True to pick the newest intact one in {self.output_dir}")
            candidates = [path]
        damaged = []
        for path in candidates:
            try:
                checkpoint = self._read_checkpoint(path, optimizer)
            except _Damaged as damage:
                if resume is True:
                    damaged.append((path, damage))
                    continue
                fix = ("delete it to resume from the one before, or resume with --resume=true (resume=True), "
                       "which skips damaged checkpoints" if resume == "strict" else
                       f"pass another checkpoint, or resume=True for the newest intact one in {path.parent}")
                raise CheckpointError(f"checkpoint {path} is damaged: {damage}; {fix}") from None
            self._warn_damaged(damaged, f"resuming from {path} instead")
            self._apply_checkpoint(path, checkpoint, optimizer, scheduler, batches_per_epoch)
            return path
        self._warn_damaged(damaged, "no checkpoint is intact, so training starts from step 0")
        return None

    def _warn_damaged(self, damaged: list[tuple[Path, "_Damaged"]], outcome: str) -> None:
        if self.is_main:
            for path, damage in damaged:
                logger.warning("checkpoint %s is damaged: %s; it is skipped (and left in place): %s "
                               "(--resume=strict stops instead)", path, damage, outcome)

    def _read_checkpoint(self, path: Path, optimizer) -> dict:
        """Every file of the checkpoint at `path`, read and checked against this run's model and
        optimizer before any of it is used; raises _Damaged saying what is wrong."""
        missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
        if missing:
            raise _Damaged(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        state = _read(path / TRAINER_STATE_FILE, _read_json)
        counters = ("global_step", "epoch", "batch", "batches_per_epoch")
        required = [f.name for f in dataclasses.fields(TrainerState)] + ["batches_per_epoch"]
        absent = [key for key in required if not isinstance(state, dict) or key not in state]
        if absent:
            raise _Damaged(f"{TRAINER_STATE_FILE} lacks the key(s) {', '.join(absent)}")
        wrong = [key for key in counters if not (type(state[key]) is int and state[key] >= 0)]
        if wrong:
            raise _Damaged(f"{TRAINER_STATE_FILE}: {', '.join(f'{k}={state[k]!r}' for k in wrong)} "
                           "should be whole numbers of 0 or more")
        if not isinstance(_read(path / "config.json", _read_json), dict):
            raise _Damaged("config.json is not a JSON object")
        weights = _read(path / "model.safetensors", lambda f: load_file(str(f), device=str(self.device)))
        self._check_weights(weights)
        optimizer_state = _read(path / "optimizer.pt",
                                lambda f: torch.load(f, map_location=self.device, weights_only=True))
        _check_optimizer_state(optimizer_state, optimizer)
        scheduler_state = _read(path / "scheduler.pt", lambda f: torch.load(f, weights_only=True))
        if not (isinstance(scheduler_state, dict) and "last_epoch" in scheduler_state):
            raise _Damaged("scheduler.pt is not a learning-rate scheduler's state_dict")
        rng_states = {}
        for file in sorted(path.glob("rng_state_*.pt")):
            rng = rng_states[file.name] = _read(file, lambda f: torch.load(f, weights_only=True))
            if not (isinstance(rng, dict) and {"python", "numpy", "torch"} <= set(rng)):
                raise _Damaged(f"{file.name} is not a Trainer's RNG state")
        return {"state": state, "weights": weights, "optimizer": optimizer_state, "scheduler": scheduler_state,
                "rng": rng_states}

    def _check_weights(self, weights: dict[str, torch.Tensor]) -> None:
        tied = getattr(self.model, "tied_weights", {})
        expected = {name: tuple(t.shape) for name, t in self.model.state_dict().items() if name not in tied}
        problems = []
        if set(expected) - set(weights):
            problems.append(f"missing {_some(sorted(set(expected) - set(weights)))}")
        if set(weights) - set(expected):
            problems.append(f"unexpected {_some(sorted(set(weights) - set(expected)))}")
        shapes = [f"{name} is {list(weights[name].shape)} (the model's: {list(shape)})"
                  for name, shape in expected.items() if name in weights and tuple(weights[name].shape) != shape]
        if shapes:
            problems.append(_some(shapes))
        if problems:
            raise _Damaged("model.safetensors does not fit the model being trained (another model's checkpoint?): "
                           + "; ".join(problems))

    def _apply_checkpoint(self, path: Path, checkpoint: dict, optimizer, scheduler, batches_per_epoch: int) -> None:
        saved = checkpoint["state"]
        if saved["batches_per_epoch"] != batches_per_epoch:
            raise CheckpointError(
                f"{path} was saved with {saved['batches_per_epoch']} batches per epoch, this run has "
                f"{batches_per_epoch}: resuming needs the same training data, train_batch_size and drop_last")
        self.model.load_state_dict(checkpoint["weights"], strict=False)  # strict enough: _check_weights
        self.model.tie_weights()
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        own = checkpoint["rng"].get(f"rng_state_{self.rank}.pt")
        if own is not None:
            set_rng_state(own)
        else:
            logger.warning("%s is missing (the checkpoint has fewer processes): reseeding this process",
                           path / f"rng_state_{self.rank}.pt")
            set_seed(self.args.seed + self.rank + saved["global_step"])
        # Rank 0's copy of the shared generators, so that every process restores the same states
        # whatever the number of processes that saved them.
        shared = checkpoint["rng"]["rng_state_0.pt"].get("shared", [])
        generators = self._shared_generators()
        for i, generator in enumerate(generators):
            if len(shared) == len(generators):
                generator.set_state(shared[i])
            else:  # saved before they were checkpointed: seeded as a fresh run's, moved on by the step
                generator.manual_seed(self.args.seed + i + saved["global_step"])
        self.state = TrainerState(**{f.name: saved[f.name] for f in dataclasses.fields(TrainerState)})

    def _save_checkpoint(self, optimizer, scheduler, batches_per_epoch: int) -> None:
        own = {**rng_state(), "shared": [generator.get_state() for generator in self._shared_generators()]}
        states = [None] * self.world_size
        if self.world_size > 1:
            dist.all_gather_object(states, own)
        else:
            states[0] = own
        failure = None
        if self.is_main:
            try:
                self._write_checkpoint(optimizer, scheduler, batches_per_epoch, states)
            except CheckpointError as err:
                failure = err
        if self.world_size > 1:
            # A barrier as well: no process runs ahead of a checkpoint that is not yet complete,
            # and every process stops when rank 0 could not write it.
            message = [None if failure is None else str(failure)]
            dist.broadcast_object_list(message, src=0)
            if message[0] is not None and failure is None:
                failure = CheckpointError(message[0])
        if failure is not None:
            raise failure

    def _write_checkpoint(self, optimizer, scheduler, batches_per_epoch: int, states: list[dict]) -> None:
        step = self.state.global_step
        final = self.output_dir / f"{CHECKPOINT_PREFIX}{step}"
        # Everything goes into a temp dir first and is renamed into place: a run killed or out of
        # disk while saving leaves no half checkpoint (a killed one a .tmp dir, removed on the next start).
        with atomic_directory(final) as tmp, self._disk_full_is_an_error(final):
            self.model.save_pretrained(tmp, tokenizer=self.tokenizer)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            for rank, state in enumerate(states):
                torch.save(state, tmp / f"rng_state_{rank}.pt")
            trainer_state = {**dataclasses.asdict(self.state), "batches_per_epoch": batches_per_epoch,
                             "world_size": self.world_size, "args": _jsonable(dataclasses.asdict(self.args))}
            with atomic_write(tmp / TRAINER_STATE_FILE) as handle:
                json.dump(trainer_state, handle, indent=2)
        self._info("Saved checkpoint %s", final)
        if self.args.save_total_limit:
            # Only now that the new checkpoint is complete, and only older ones: the newest intact
            # checkpoint is never the one removed (a newer one, left by an earlier run, is kept).
            older = [path for saved_step, path in self._checkpoints() if saved_step < step]
            for old in older[:max(0, len(older) - (self.args.save_total_limit - 1))]:
                shutil.rmtree(old)

    @contextlib.contextmanager
    def _disk_full_is_an_error(self, path: Path):
        """A full disk while writing `path` becomes a CheckpointError that says what is kept.
        Entered inside atomic_directory, so that the free space is measured before the temp files go."""
        try:
            yield
        except Exception as err:
            if not _is_disk_full(err, path if path.is_dir() else path.parent):
                raise
            kept = [p for _, p in self._checkpoints() if p != path]
            previous = (f"the previous checkpoint {kept[-1]} is kept" if kept else
                        "no earlier checkpoint was saved")
            raise CheckpointError(f"no space left on device writing {path}; {previous}; free space or set "
                                  "--output_dir elsewhere") from err

    # -- helpers ---------------------------------------------------------------------------

    def _loader(self, dataset: Dataset, batch_sampler) -> DataLoader:
        # An own generator: creating a DataLoader iterator draws a seed from it, and drawing from
        # the global RNG instead would make the dropout masks depend on how often we evaluate.
        return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=self.collate_fn,
                          num_workers=self.args.dataloader_num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.args.seed))

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _mean_over_processes(self, value: torch.Tensor) -> float:
        if self.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return float(value)

    def _info(self, message: str, *args) -> None:
        if self.is_main:  # one process speaks for all
            logger.info(message, *args)

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        if self._metrics is not None:
            self._metrics.log(record)
            if record["event"] != "train":
                self._metrics.plot_curves()
        else:  # evaluate() or predict() outside train(): append to the run's record
            metrics = MetricsLogger(self.output_dir, self.args.tensorboard, self.args.plot, truncate_after=None)
            metrics.log(record)
            metrics.close()


class _Speed:
    """Steps and examples per second since the last log line, not counting evaluation and saving."""

    def __init__(self):
        self.reset()

    @contextlib.contextmanager
    def paused(self):
        start = time.perf_counter()
        yield
        self.start += time.perf_counter() - start

    def reset(self) -> None:
        self.start, self.steps, self.examples = time.perf_counter(), 0, 0

    def steps_per_second(self) -> float:
        return self.steps / max(1e-9, time.perf_counter() - self.start)

    def examples_per_second(self) -> float:
        return self.examples / max(1e-9, time.perf_counter() - self.start)


def _batch_size(batch: dict) -> int:
    return len(next(v for v in batch.values() if torch.is_tensor(v)))


def _default_prediction(output):
    if not hasattr(output, "logits"):
        raise ConfigError(f"{type(output).__name__} has no .logits; give the Trainer an eval_step, e.g. "
                          "eval_step=lambda out, batch: (out.start_logits, out.end_logits)")
    return output.logits


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


# ---------------------------------------------------------------------------------------------
# Checking a checkpoint before resuming from it, and telling a full disk from other failures.


class _Damaged(Exception):
    """A checkpoint that cannot be resumed from; the message says which file and what is wrong."""


def _read(file: Path, reader):
    """reader(file), or _Damaged naming the file and why it cannot be read."""
    try:
        return reader(file)
    except pickle.UnpicklingError:
        raise _Damaged(f"{file.name} cannot be loaded with torch.load(weights_only=True): it is corrupt, or holds "
                       "objects other than tensors") from None
    except (OSError, ValueError, RuntimeError, EOFError, SafetensorError) as err:
        size = file.stat().st_size if file.is_file() else 0
        raise _Damaged(f"{file.name} cannot be read ({size} bytes; truncated or overwritten?): "
                       f"{_first_sentence(err)}") from None


def _read_json(file: Path):
    return json.loads(file.read_text(encoding="utf-8"))


def _first_sentence(error: BaseException) -> str:
    """The gist of a library's message (torch's go on for lines about filing issues)."""
    text = " ".join(str(error).split())
    if not text:
        return f"{type(error).__name__} (an empty file?)"
    return re.split(r"(?<=\.) ", text, maxsplit=1)[0].rstrip(".")


def _some(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _check_optimizer_state(saved, optimizer) -> None:
    """That `saved` is a state_dict of this optimizer over this model's parameters."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not (isinstance(groups, list) and isinstance(saved.get("state"), dict)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        raise _Damaged("optimizer.pt is not an optimizer's state_dict")
    sizes = [len(g["params"]) for g in groups]
    if sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise _Damaged(f"optimizer.pt holds parameter groups of {sizes} tensors, this model's optimizer "
                       f"{[len(g['params']) for g in optimizer.param_groups]}")
    for saved_group, group in zip(groups, optimizer.param_groups):
        for index, param in zip(saved_group["params"], group["params"]):
            state = saved["state"].get(index, {})
            for key, value in (state.items() if isinstance(state, dict) else ()):
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                    raise _Damaged(f"optimizer.pt's {key} of a {list(param.shape)} parameter is "
                                   f"{list(value.shape)}")


# Free space below which a failed write is taken for a full disk.
_FULL_BELOW = 1 << 20


def _is_disk_full(error: BaseException, directory: Path) -> bool:
    """Whether `error`, raised while writing into `directory`, comes from a full disk or quota.

    Python's writes raise OSError(ENOSPC); safetensors' a SafetensorError that quotes the OS
    message, and torch.save a RuntimeError ("unexpected pos") that says nothing of it: for that
    one the free space left decides.
    """
    cause = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__ or cause.__context__
    if any(text in str(error) for text in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))):
        return True
    if isinstance(error, RuntimeError):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(directory).free < _FULL_BELOW
    return False
