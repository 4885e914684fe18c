"""LoadReport: what happened to every tensor when a checkpoint met a model."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field


@dataclass
class LoadReport:
    source: str = ""
    format: str = ""
    model_class: str = ""
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint: initialised
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model: ignored
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, checkpoint, model)
    reinitialized: list[str] = field(default_factory=list)
    resized: list[tuple[str, tuple, tuple, str]] = field(default_factory=list)  # (name, old, new, how)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint name, model name)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint name, reason)
    notes: list[str] = field(default_factory=list)  # surgery and copies, in the order they were done

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self, max_names: int = 6) -> str:
        lines = [f"{self.model_class} from {self.source} ({self.format})"]

        def row(label: str, names: list[str], suffix: str = "") -> None:
            if names:
                lines.append(f"  {label:<14}{len(names):>5}  {compress_names(names, max_names)}{suffix}")
            else:
                lines.append(f"  {label:<14}{0:>5}")

        row("loaded", self.loaded)
        row("missing", self.missing, "  -> newly initialised" if self.missing else "")
        row("unexpected", self.unexpected, "  -> ignored" if self.unexpected else "")
        lines.append(f"  {'mismatched':<14}{len(self.mismatched):>5}")
        lines += [f"      {n}: checkpoint {tuple(a)} vs model {tuple(b)} -> newly initialised"
                  for n, a, b in self.mismatched]
        row("reinitialized", self.reinitialized)
        lines.append(f"  {'resized':<14}{len(self.resized):>5}")
        lines += [f"      {n}: {tuple(a)} -> {tuple(b)} ({how})" for n, a, b, how in self.resized]
        if self.renamed:
            lines.append(f"  {'renamed':<14}{len(self.renamed):>5}  "
                         + ", ".join(f"{a} -> {b}" for a, b in self.renamed[:max_names])
                         + (", ..." if len(self.renamed) > max_names else ""))
        if self.skipped:
            reasons: dict[str, list[str]] = {}
            for name, reason in self.skipped:
                reasons.setdefault(reason, []).append(name)
            for reason, names in reasons.items():
                lines.append(f"  {'skipped':<14}{len(names):>5}  {compress_names(names, max_names)} ({reason})")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def compress_names(names: list[str], max_names: int) -> str:
    """Fold names for reading: per-layer names become `encoder.layer.{0..11}.x`, and when that is
    still long, whole modules become `bert.encoder.layer.{0..5}.* (96)`."""
    shown = _fold_layers(names, lambda name: name)
    if len(shown) > max_names:
        shown = _fold_layers(names, _module_of)
    text = ", ".join(shown[:max_names])
    return text + (f", ... (+{len(shown) - max_names} more)" if len(shown) > max_names else "")


SLOT_SUFFIXES = ("adam_m", "adam_v", "Adam", "Adam_1", "Momentum")


def _module_of(name: str) -> str:
    """`bert.encoder.layer.3.attention.self.query.weight` -> `bert.encoder.layer.3.*`; `classifier.weight` -> `classifier.*`.

    Google's `a/b/kernel/adam_m` names fold by optimizer slot (`*/adam_m`), others by their first part.
    """
    if "/" in name:
        parts = name.split("/")
        return f"*/{parts[-1]}" if parts[-1] in SLOT_SUFFIXES else f"{parts[0]}/*"
    match = re.search(r"\.layer\.\d+\.", name)
    if match is not None:
        return name[:match.end()] + "*"
    parts = name.split(".")
    return ".".join(parts[: 2 if parts[0] == "bert" and len(parts) > 2 else 1]) + ".*"


def _fold_layers(names: list[str], key_of) -> list[str]:
    groups: dict[str, tuple[set[int], list[str]]] = {}
    for name in names:
        key = key_of(name)
        match = re.search(r"\.layer\.(\d+)\.", key)
        if match is not None:
            key = key[:match.start()] + ".layer.{}." + key[match.end():]
        layers, members = groups.setdefault(key, (set(), []))
        if match is not None:
            layers.add(int(match.group(1)))
        members.append(name)
    shown = []
    for key, (layers, members) in groups.items():
        if "{}" in key:
            ordered = sorted(layers)
            key = key.replace("{}", str(ordered[0]) if len(ordered) == 1 else _span(ordered))
        shown.append(f"{key} ({len(members)})" if "*" in key else key)
    return shown


def _span(layers: list[int]) -> str:
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{{{layers[0]}..{layers[-1]}}}"
    return "{" + ",".join(map(str, layers)) + "}"
