"""The fine-tuning stages of paper 004: instance classification (3.1), then the FCN (3.4.1); the
optimiser and the epoch record they share."""

from muselens.training.stages.classification import (
    ClassificationConfig,
    EvalStats,
    evaluate_accuracy,
    fit_classification,
    train_epoch,
)
from muselens.training.stages.epoch_stats import EpochStats
from muselens.training.stages.fcn import (
    FCNConfig,
    accumulate_fcn_gradients,
    fcn_image_loss,
    fcn_location_accuracy,
    fit_fcn,
    step_sizes,
    train_fcn_epoch,
)
from muselens.training.stages.optimiser import OptimConfig, apply_lr_schedule, build_optimizer, cosine_factor

__all__ = [
    "ClassificationConfig",
    "EpochStats",
    "EvalStats",
    "FCNConfig",
    "OptimConfig",
    "accumulate_fcn_gradients",
    "apply_lr_schedule",
    "build_optimizer",
    "cosine_factor",
    "evaluate_accuracy",
    "fcn_image_loss",
    "fcn_location_accuracy",
    "fit_classification",
    "fit_fcn",
    "step_sizes",
    "train_epoch",
    "train_fcn_epoch",
]
