"""Training: the Trainer shared by every task, its optimizer and schedules, metrics and logging.

Metrics live in bertkit.training.metrics, imported on their own: scikit-learn takes a second to
import, which every process of a run would pay.
"""

from bertkit.training.optim import AdamWeightDecay, create_optimizer, get_scheduler
from bertkit.training.trainer import (PredictionOutput, Trainer, TrainerState, TrainingArguments, TrainingError,
                                      TrainOutput, set_seed)

__all__ = ["AdamWeightDecay", "PredictionOutput", "Trainer", "TrainerState", "TrainingArguments", "TrainingError",
           "TrainOutput", "create_optimizer", "get_scheduler", "set_seed"]
