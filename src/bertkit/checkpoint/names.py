"""Name maps between checkpoint formats and bertkit (whose names are HF's).

Loading is by name, never by position: a from-scratch BERT that zips two parameter lists silently
loses accuracy as soon as one name differs (LayerNorm gamma/beta is the classic case).
"""

from __future__ import annotations

import re

# Buffers that some HF checkpoints store but that the model recomputes.
IGNORED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")

# Renames of whole HF names (older transformers versions and TF-ported checkpoints).
HF_ALIASES = {
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}

# Google variable names that are not a plain path rename: {google name: (bertkit name, transpose)}.
GOOGLE_SPECIAL = {
    "cls/predictions/output_bias": ("cls.predictions.bias", False),
    "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),  # stored (2, H) = (out, in)
    "cls/seq_relationship/output_bias": ("cls.seq_relationship.bias", False),
    "output_weights": ("classifier.weight", False),  # run_classifier.py's head, (num_labels, H)
    "output_bias": ("classifier.bias", False),
    "cls/squad/output_weights": ("qa_outputs.weight", False),  # run_squad.py's head, (2, H)
    "cls/squad/output_bias": ("qa_outputs.bias", False),
}

# Google leaf names: {leaf: (HF leaf, transpose)}. TF dense kernels are (in, out); torch Linear is (out, in).
GOOGLE_LEAVES = {
    "kernel": ("weight", True),
    "bias": ("bias", False),
    "gamma": ("weight", False),
    "beta": ("bias", False),
}

# Optimizer and bookkeeping variables in training checkpoints: skipped and reported.
_GOOGLE_SKIP = re.compile(r"(^|/)(adam_m|adam_v|Adam|Adam_1|Momentum)$|^global_step$|^good_steps$|^loss_scale$")


def normalize_hf_name(name: str) -> str:
    """gamma/beta -> weight/bias and the aliases above; the prefix is handled by `match_to_model`."""
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    return HF_ALIASES.get(name, name)


def match_to_model(name: str, model_keys: set[str], prefix: str) -> str | None:
    """The model key for a checkpoint key, adding or removing the base-model prefix (`bert.`) as needed."""
    name = normalize_hf_name(name)
    if name in model_keys:
        return name
    if prefix and f"{prefix}.{name}" in model_keys:
        return f"{prefix}.{name}"
    # A task checkpoint (`bert.encoder...`) loaded into a bare BertModel (`encoder...`), or into a
    # model whose prefix differs.
    head, _, rest = name.partition(".")
    if rest:
        if rest in model_keys:
            return rest
        if prefix and f"{prefix}.{rest}" in model_keys:
            return f"{prefix}.{rest}"
    return None


def is_ignored_buffer(name: str) -> bool:
    return name.endswith(IGNORED_BUFFERS)


def google_to_hf(name: str) -> tuple[str, bool] | None:
    """Google TF variable name -> (HF name, transpose), or None when it is not a model weight.

    `bert/encoder/layer_3/attention/self/query/kernel` -> (`bert.encoder.layer.3.attention.self.query.weight`, True)
    """
    if name in GOOGLE_SPECIAL:
        return GOOGLE_SPECIAL[name]
    parts = name.split("/")
    if parts[0] not in ("bert", "cls"):
        return None
    if parts[0] == "bert" and len(parts) == 3 and parts[1] == "embeddings" and parts[2].endswith("_embeddings"):
        return f"bert.embeddings.{parts[2]}.weight", False
    leaf = GOOGLE_LEAVES.get(parts[-1])
    if leaf is None:
        return None
    path = [re.sub(r"^layer_(\d+)$", r"layer.\1", part) for part in parts[:-1]]
    return ".".join(path + [leaf[0]]), leaf[1]


def google_skip_reason(name: str) -> str | None:
    """Why a Google variable is not loaded, when it is bookkeeping rather than a weight."""
    if name.endswith(("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum")):
        return "optimizer slot"
    if _GOOGLE_SKIP.search(name):
        return "training bookkeeping"
    return None
