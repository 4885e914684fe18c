"""Compression: distillation, students cut from a teacher, LayerDrop, and head / neuron / weight pruning.

    from bertkit.compress import student_from_teacher, DistillationTrainer, prune_structured

See distill.py, student.py, layerdrop.py and prune.py; the commands are `bertkit distill` and
`bertkit prune`.
"""

from bertkit.compress.distill import (DistillationArguments, DistillationTrainer, TeacherCache, attention_loss,
                                      default_layer_map, distillation_loss, hidden_state_loss,
                                      soft_kl)
from bertkit.compress.layerdrop import evaluate_depths, format_depth_table, prune_layers, set_layerdrop
from bertkit.compress.prune import (PruningScores, importance_scores, keep_pruned_at_zero, magnitude_prune,
                                    magnitude_scores, prune_heads, prune_neurons, prune_structured, select_lowest,
                                    sparsity_report)
from bertkit.compress.student import keep_layers, resolve_layers, student_from_teacher, uniform_layers

__all__ = [
    "DistillationArguments", "DistillationTrainer", "PruningScores", "TeacherCache", "attention_loss",
    "default_layer_map", "distillation_loss", "evaluate_depths", "format_depth_table",
    "hidden_state_loss", "importance_scores", "keep_layers", "keep_pruned_at_zero", "magnitude_prune",
    "magnitude_scores", "prune_heads", "prune_layers", "prune_neurons", "prune_structured", "resolve_layers",
    "select_lowest", "set_layerdrop", "soft_kl", "sparsity_report", "student_from_teacher", "uniform_layers",
]
