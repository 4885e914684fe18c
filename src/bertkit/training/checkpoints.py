"""Trainer checkpoints: where training is (TrainerState, every RNG), written atomically, and read,
validated and restored on resume. The Trainer (training/trainer.py) mixes CheckpointMixin in; the
loop calls `_resume` once and `_save_checkpoint` every save_checkpoints_steps.

Layout, `output_dir/checkpoint-<step>/`, written into a temp dir then renamed into place:

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
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file

from bertkit.errors import CheckpointError, ConfigError
from bertkit.io_utils import atomic_directory, atomic_write

logger = logging.getLogger("bertkit.training.trainer")

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE_FILE = "trainer_state.json"
# What every checkpoint holds besides rng_state_<rank>.pt (of which rank 0's is always there).
CHECKPOINT_FILES = (TRAINER_STATE_FILE, "config.json", "model.safetensors", "optimizer.pt", "scheduler.pt",
                    "rng_state_0.pt")


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


# Seeds and RNG state.


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


class CheckpointMixin:
    """The Trainer's checkpoint writing and resuming; it uses the Trainer's model, args, state,
    output_dir, device, rank, world_size, is_main, tokenizer and _info."""

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
