"""Knowledge distillation (Hinton et al., 2015; DistilBERT; TinyBERT's intermediate losses).

The student learns from the teacher's softened outputs and from the labels:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * hard loss

T^2 keeps the soft gradients' scale independent of T (Hinton et al., Section 2). The hard loss is
the student head's own loss (cross-entropy, or MSE for regression). Per task:
  * classification / multiple choice: KL over the classes, mean over examples;
  * regression (num_labels = 1): there is no distribution, so the soft loss is MSE(student, teacher)
    on the logits (no T);
  * token classification: KL per token, mean over real tokens (padding and label -100 left out);
  * question answering: KL over the positions of the start and of the end logits, padding
    excluded from the softmax, the two averaged.
Optionally (TinyBERT, Jiao et al., 2020): MSE between hidden states of mapped layers, through a
learned projection when the widths differ, and MSE between attention probabilities, padding masked
in both. The teacher runs in eval mode under no_grad and never receives gradients.

    trainer = DistillationTrainer(student, teacher, TrainingArguments(...),
                                  DistillationArguments(temperature=2.0, alpha=0.5),
                                  train_dataset=..., eval_dataset=..., compute_metrics=...)
    trainer.train()

With `teacher_cache_dir` the teacher's outputs for the training set are computed once and stored
on disk under a key made of the data and the teacher's weights, so later epochs (and later runs
with the same data and teacher) do not run the teacher (logit losses only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bertkit.errors import ConfigError
from bertkit.io_utils import atomic_save_with
from bertkit.training.trainer import Trainer, TrainingArguments

logger = logging.getLogger("bertkit.compress")

TASKS = ("classification", "regression", "token", "qa")
EXAMPLE_INDEX = "example_index"  # batch key added by IndexedDataset, removed before the forward
LABEL_KEYS = ("labels", "start_positions", "end_positions", "next_sentence_label")


# ---------------------------------------------------------------------------------------------
# Losses.


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
            mask: torch.Tensor | None = None, class_mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) summed over the last dimension, averaged
    over the other positions (those where `mask` is True, when given).

    class_mask (same shape as the logits, or broadcastable): entries of the last dimension that do
    not exist (padding positions of QA logits); they get no probability in either distribution.
    """
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    if class_mask is not None:
        low = torch.finfo(s.dtype).min
        s = s.masked_fill(~class_mask, low)
        t = t.masked_fill(~class_mask, low)
    log_p_s = F.log_softmax(s, dim=-1)
    log_p_t = F.log_softmax(t, dim=-1)
    terms = log_p_t.exp() * (log_p_t - log_p_s)
    if class_mask is not None:
        terms = terms.masked_fill(~class_mask, 0.0)
    per_row = terms.sum(dim=-1)
    if mask is not None:
        per_row = per_row[mask.bool()]
        if per_row.numel() == 0:
            return student_logits.sum() * 0.0
    return per_row.mean()


@dataclass
class DistillationLoss:
    loss: torch.Tensor
    soft: torch.Tensor  # the KL (or MSE for regression), before alpha and T^2
    hard: torch.Tensor | None
    hidden: torch.Tensor | None = None
    attention: torch.Tensor | None = None


def distillation_loss(student_logits, teacher_logits, hard_loss: torch.Tensor | None = None, *,
                      temperature: float = 2.0, alpha: float = 0.5, task: str = "classification",
                      mask: torch.Tensor | None = None) -> DistillationLoss:
    """alpha * T^2 * KL + (1 - alpha) * hard_loss (see the module docstring for each task).

    student_logits / teacher_logits: (B, C) for classification, (B, 1) regression, (B, T, C) token
    classification, a (start, end) pair of (B, T) for QA. mask: (B, T) bool of the positions that
    count (token classification and QA). Without hard_loss (no labels) the second term is dropped.
    """
    if task not in TASKS:
        raise ConfigError(f"distillation task {task!r}: use one of {', '.join(TASKS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    if task == "regression":
        soft = F.mse_loss(student_logits.float(), teacher_logits.detach().float())
        weighted = alpha * soft
    else:
        if task == "qa":
            parts = [soft_kl(s, t, temperature, class_mask=None if mask is None else mask.bool())
                     for s, t in zip(student_logits, teacher_logits)]
            soft = sum(parts) / len(parts)
        elif task == "token":
            soft = soft_kl(student_logits, teacher_logits, temperature, mask=mask)
        else:
            soft = soft_kl(student_logits, teacher_logits, temperature)
        weighted = alpha * temperature ** 2 * soft
    loss = weighted if hard_loss is None else weighted + (1.0 - alpha) * hard_loss.float()
    return DistillationLoss(loss, soft, hard_loss)


def hidden_state_loss(student_hidden, teacher_hidden, layer_map: dict[int, int], mask: torch.Tensor | None = None,
                      projection: nn.Module | None = None) -> torch.Tensor:
    """Mean squared error between mapped hidden states (`hidden_states` positions: 0 is the
    embedding output, i the output of layer i), mean over features and real tokens, averaged over
    the pairs. `projection` maps the student's width to the teacher's."""
    losses = []
    for s, t in layer_map.items():
        a, b = student_hidden[s], teacher_hidden[t]
        if projection is not None:
            a = projection(a)
        per_token = (a.float() - b.detach().float()).pow(2).mean(dim=-1)  # (B, T)
        losses.append(per_token[mask.bool()].mean() if mask is not None else per_token.mean())
    if not losses:
        raise ConfigError("hidden-state distillation needs a non-empty layer map")
    return sum(losses) / len(losses)


def attention_loss(student_attentions, teacher_attentions, layer_map: dict[int, int],
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between attention probabilities of mapped layers (positions as in
    hidden_state_loss; 0, the embeddings, has none). Heads are averaged when the counts differ.
    Only entries whose query and key are both real tokens count. A layer the student skipped
    (LayerDrop) has no attentions and is left out."""
    losses = []
    for s, t in layer_map.items():
        if s == 0 or t == 0:
            continue
        a, b = student_attentions[s - 1], teacher_attentions[t - 1]
        if a is None or b is None:
            continue
        if a.size(1) != b.size(1):
            a, b = a.mean(dim=1, keepdim=True), b.mean(dim=1, keepdim=True)
        squared = (a.float() - b.detach().float()).pow(2)  # (B, nh, T, T)
        if mask is not None:
            valid = (mask[:, None, :, None] & mask[:, None, None, :]).expand_as(squared)
            losses.append(squared[valid].mean())
        else:
            losses.append(squared.mean())
    if not losses:
        return torch.zeros((), device=student_attentions[0].device if student_attentions else None)
    return sum(losses) / len(losses)


def default_layer_map(student_config, teacher_config) -> dict[int, int]:
    """{student hidden-state position: teacher position}: the embeddings to the embeddings, then a
    student cut from the teacher to the layers it was copied from (config.kept_layers),
    any other student layer j of Ls to teacher layer round(j * Lt / Ls) (the top to the top)."""
    ls, lt = student_config.num_hidden_layers, teacher_config.num_hidden_layers
    kept = student_config.kept_layers
    teacher_kept = teacher_config.kept_layers
    mapping = {0: 0}
    if kept and len(kept) == ls:
        if teacher_kept:
            if not set(kept) <= set(teacher_kept):
                kept = None
            else:
                kept = [teacher_kept.index(k) for k in kept]
        if kept and max(kept) < lt:
            mapping.update({j + 1: k + 1 for j, k in enumerate(kept)})
            return mapping
    mapping.update({j: round(j * lt / ls) for j in range(1, ls + 1)})
    return mapping


# ---------------------------------------------------------------------------------------------
# Task plumbing.


def infer_task(model: nn.Module) -> str:
    """The distillation kind the head declares (bertkit.heads: its `distillation_kind`)."""
    kind = getattr(model, "distillation_kind", None)
    if kind is None:
        raise ConfigError(f"cannot tell the distillation task of {type(model).__name__}; "
                          f"pass task= one of {', '.join(TASKS)}")
    return kind


def output_logits(output, task: str):
    """The tensors the soft loss compares: logits, or (start_logits, end_logits) for QA."""
    if task == "qa":
        return output.start_logits, output.end_logits
    return output.logits


def position_mask(batch: dict, task: str) -> torch.Tensor | None:
    """(B, T) bool of the positions that count: real tokens, and for token classification with
    labels, not label -100."""
    attention = batch.get("attention_mask")
    if task == "token":
        mask = attention.bool() if attention is not None else torch.ones_like(batch["input_ids"], dtype=torch.bool)
        labels = batch.get("labels")
        if labels is not None:
            mask = mask & (labels != -100)
        return mask
    if task == "qa":
        return attention.bool() if attention is not None else None
    return None


def token_mask(batch: dict) -> torch.Tensor | None:
    """(N, T) bool of real tokens, flattened over choices for multiple choice (as the encoder sees them)."""
    attention = batch.get("attention_mask")
    if attention is None:
        return None
    return attention.reshape(-1, attention.size(-1)).bool()


# ---------------------------------------------------------------------------------------------
# Teacher output cache.


class IndexedDataset(Dataset):
    """Adds each example's index (EXAMPLE_INDEX), so that cached teacher outputs find their batch."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        lengths = getattr(dataset, "lengths", None)
        if lengths is not None:
            self.lengths = lengths

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], EXAMPLE_INDEX: index}


def dataset_fingerprint(dataset: Dataset, keys=("input_ids", "attention_mask", "token_type_ids")) -> str:
    """A hash of the model inputs of every example (labels excluded: the teacher does not see them)."""
    digest = hashlib.blake2b(digest_size=16)
    for i in range(len(dataset)):
        example = dataset[i]
        digest.update(json.dumps([example.get(k) for k in keys], separators=(",", ":")).encode())
    return digest.hexdigest()


@torch.no_grad()
def model_fingerprint(model: nn.Module) -> str:
    """A hash of a model's class, tensor names, shapes and values."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class TeacherCache:
    """The teacher's logits for every training example, in memory, loaded from or saved to disk.

    Sequence outputs (token classification, QA) are kept without their padding, one row per real
    input position, and padded again to each batch's length.
    """

    def __init__(self, outputs: list[torch.Tensor], offsets: torch.Tensor, sequence: bool):
        self.outputs = outputs  # per output: (sum of rows, ...) concatenated over examples
        self.offsets = offsets  # (N + 1,) row offsets
        self.sequence = sequence

    def batch(self, indices: torch.Tensor, length: int, device) -> tuple[torch.Tensor, ...]:
        rows = []
        for out in self.outputs:
            parts = [out[self.offsets[i]:self.offsets[i + 1]] for i in indices.tolist()]
            if self.sequence:
                padded = out.new_zeros((len(parts), length, *out.shape[1:]))
                for j, part in enumerate(parts):
                    padded[j, :len(part)] = part[:length]
                rows.append(padded.to(device))
            else:
                rows.append(torch.cat(parts).to(device))
        return tuple(rows)

    def save(self, path: Path) -> None:
        tensors = {f"output_{k}": t.contiguous() for k, t in enumerate(self.outputs)}
        tensors["offsets"] = self.offsets
        metadata = {"sequence": str(self.sequence)}
        atomic_save_with(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @classmethod
    def load(cls, path: Path) -> "TeacherCache":
        from safetensors import safe_open

        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            sequence = (handle.metadata() or {}).get("sequence") == "True"
        n = len([k for k in tensors if k.startswith("output_")])
        return cls([tensors[f"output_{k}"] for k in range(n)], tensors["offsets"], sequence)

    @classmethod
    @torch.no_grad()
    def compute(cls, teacher: nn.Module, dataset: Dataset, collate_fn, task: str, batch_size: int,
                device: torch.device, autocast) -> "TeacherCache":
        sequence = task in ("token", "qa")
        was_training = teacher.training
        teacher.eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
        per_output: list[list[torch.Tensor]] | None = None
        counts = []
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v) and k not in LABEL_KEYS
                     and k != EXAMPLE_INDEX}
            with autocast():
                logits = output_logits(teacher(**batch), task)
            logits = logits if isinstance(logits, tuple) else (logits,)
            if per_output is None:
                per_output = [[] for _ in logits]
            if sequence:
                lengths = (batch["attention_mask"].sum(-1) if "attention_mask" in batch
                           else torch.full((len(batch["input_ids"]),), batch["input_ids"].size(-1)))
                for row, n in enumerate(lengths.tolist()):
                    for k, out in enumerate(logits):
                        per_output[k].append(out[row, :n].float().cpu())
                    counts.append(n)
            else:
                for k, out in enumerate(logits):
                    per_output[k].append(out.float().cpu())
                counts += [1] * len(logits[0])
        teacher.train(was_training)
        outputs = [torch.cat(parts) for parts in per_output]
        offsets = torch.tensor([0] + counts).cumsum(0)
        return cls(outputs, offsets, sequence)


# ---------------------------------------------------------------------------------------------
# The trainer.


@dataclass
class DistillationArguments:
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the soft (teacher) loss; 1 - alpha goes to the labels
    task: str = "auto"  # classification, regression, token, qa; "auto": from the student's class
    hidden_weight: float = 0.0  # weight of the hidden-state MSE (0: off)
    attention_weight: float = 0.0  # weight of the attention MSE (0: off)
    layer_map: dict[int, int] | None = None  # {student position: teacher position}; None: default_layer_map
    teacher_cache_dir: str | None = None  # store the teacher's logits for the training set here

    def __post_init__(self):
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.task != "auto" and self.task not in TASKS:
            raise ConfigError(f"distillation task {self.task!r}: use auto or one of {', '.join(TASKS)}")
        if self.hidden_weight < 0 or self.attention_weight < 0:
            raise ConfigError("hidden_weight and attention_weight must not be negative")
        if self.teacher_cache_dir and (self.hidden_weight or self.attention_weight):
            raise ConfigError("the teacher cache holds logits only: hidden-state and attention losses need the "
                              "teacher to run; drop teacher_cache_dir or those losses")
        if self.layer_map is not None:
            self.layer_map = {int(k): int(v) for k, v in self.layer_map.items()}


class DistillationTrainer(Trainer):
    """The Trainer with the distillation loss: `compute_loss` runs the student with labels (its
    own loss is the hard loss) and the teacher (eval, no_grad) or its cached logits.

    A projection from the student's width to the teacher's (for hidden-state MSE) is trained with
    the student: it lives in the student as `distill_projection` while training (so checkpoints
    resume exactly) and is removed, and the final model saved again without it, afterwards.
    Evaluation reports the student's own (hard-label) loss and metrics.
    """

    def __init__(self, model: nn.Module, teacher: nn.Module, args: TrainingArguments,
                 distill_args: DistillationArguments | None = None, **kwargs):
        super().__init__(model, args, **kwargs)
        self.distill_args = distill_args or DistillationArguments()
        self.task = self.distill_args.task if self.distill_args.task != "auto" else infer_task(model)
        self.teacher = teacher.to(self.device).eval()  # runs under no_grad: it never gets gradients
        self.layer_map = self.distill_args.layer_map or default_layer_map(model.config, teacher.config)
        self._check_layer_map()
        self.projection: nn.Module | None = None
        student_width, teacher_width = model.config.hidden_size, teacher.config.hidden_size
        if self.distill_args.hidden_weight and student_width != teacher_width:
            self.projection = nn.Linear(student_width, teacher_width).to(self.device)
            nn.init.trunc_normal_(self.projection.weight, std=model.config.initializer_range)
            nn.init.zeros_(self.projection.bias)
        self.cache: TeacherCache | None = None
        self.last_losses: DistillationLoss | None = None

    def _check_layer_map(self) -> None:
        ls = self.model.config.num_hidden_layers
        lt = self.teacher.config.num_hidden_layers
        for s, t in self.layer_map.items():
            if not (0 <= s <= ls and 0 <= t <= lt):
                raise ConfigError(f"layer map {self.layer_map}: positions run 0..{ls} for the student and "
                                  f"0..{lt} for the teacher (0 is the embedding output)")

    # -- training ----------------------------------------------------------------------------

    def train(self, resume=False):
        if self.distill_args.teacher_cache_dir and self.train_dataset is not None:
            self.cache = self._teacher_cache()
            self.train_dataset = IndexedDataset(self.train_dataset)
        if self.projection is not None:
            self.model.distill_projection = self.projection  # trained and checkpointed with the student
        try:
            output = super().train(resume=resume)
        finally:
            if self.projection is not None and hasattr(self.model, "distill_projection"):
                del self.model.distill_projection
            if isinstance(self.train_dataset, IndexedDataset):
                self.train_dataset = self.train_dataset.dataset
        if self.projection is not None and self.is_main:
            self.model.save_pretrained(self.output_dir, tokenizer=self.tokenizer)  # without the projection
        return output

    def _teacher_cache(self) -> TeacherCache:
        directory = Path(self.distill_args.teacher_cache_dir)
        key = hashlib.blake2b(digest_size=12)
        key.update(dataset_fingerprint(self.train_dataset).encode())
        key.update(model_fingerprint(self.teacher).encode())
        key.update(f"{self.task}:bf16={self.args.bf16}".encode())
        path = directory / f"teacher-logits-{key.hexdigest()}.safetensors"
        if path.is_file():
            logger.info("teacher logits from the cache %s", path)
            return TeacherCache.load(path)
        logger.info("computing the teacher's logits for %d training examples (cached at %s)",
                    len(self.train_dataset), path)
        cache = TeacherCache.compute(self.teacher, self.train_dataset, self.collate_fn, self.task,
                                     self.args.eval_batch_size, self.device, self._autocast)
        if self.is_main:
            directory.mkdir(parents=True, exist_ok=True)
            cache.save(path)
        return cache

    def compute_loss(self, model, batch: dict) -> torch.Tensor:
        args = self.distill_args
        batch = self._to_device(batch)
        indices = batch.pop(EXAMPLE_INDEX, None)
        want_hidden = bool(args.hidden_weight)
        want_attention = bool(args.attention_weight)
        flags = {}
        if want_hidden:
            flags["output_hidden_states"] = True
        if want_attention:
            flags["output_attentions"] = True
        with self._autocast():
            student_out = model(**batch, **flags)
            teacher_out = None
            if self.cache is not None and indices is not None:
                cached = self.cache.batch(indices, batch["input_ids"].size(-1), self.device)
                teacher_logits = cached if self.task == "qa" else cached[0]
            else:
                self.teacher.eval()
                with torch.no_grad():
                    inputs = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
                    teacher_out = self.teacher(**inputs, **flags)
                teacher_logits = output_logits(teacher_out, self.task)
        losses = distillation_loss(output_logits(student_out, self.task), teacher_logits,
                                   hard_loss(student_out, batch),
                                   temperature=args.temperature, alpha=args.alpha, task=self.task,
                                   mask=position_mask(batch, self.task))
        total = losses.loss
        if want_hidden or want_attention:
            mask = token_mask(batch)
            s_enc, t_enc = student_out.encoder_output, teacher_out.encoder_output
            if want_hidden:
                projection = getattr(_unwrap(model), "distill_projection", None) if self.projection is not None else None
                losses.hidden = hidden_state_loss(s_enc.hidden_states, t_enc.hidden_states, self.layer_map, mask,
                                                  projection)
                total = total + args.hidden_weight * losses.hidden
            if want_attention:
                losses.attention = attention_loss(s_enc.attentions, t_enc.attentions, self.layer_map, mask)
                total = total + args.attention_weight * losses.attention
        self.last_losses = losses
        if not math.isfinite(float(total.detach())):
            logger.warning("non-finite distillation loss: soft %s hard %s", losses.soft, losses.hard)
        return total.float()


def hard_loss(student_out, batch: dict) -> torch.Tensor | None:
    """The student's own loss, or None when no example of the batch has a label: transfer-set
    examples carry label -100 (the teacher's soft targets only), and a cross-entropy over no
    labels at all would be NaN."""
    labels = batch.get("labels")
    if labels is not None and labels.dtype == torch.long and not bool((labels != -100).any()):
        return None
    return student_out.loss


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


__all__ = ["DistillationArguments", "DistillationLoss", "DistillationTrainer", "IndexedDataset", "TeacherCache",
           "attention_loss", "default_layer_map", "distillation_loss",
           "hidden_state_loss", "infer_task", "soft_kl"]
