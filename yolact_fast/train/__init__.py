"""Training: prior matching, the YOLACT loss and the training loop."""

from .distributed import Processes, init_from_environment
from .loss import LossWeights, encode, match, ohem_negatives, yolact_loss
from ..model.checkpoint import save_weights
from .trainer import TrainOptions, Trainer, read_checkpoint, train

__all__ = [
    "LossWeights",
    "encode",
    "match",
    "ohem_negatives",
    "yolact_loss",
    "TrainOptions",
    "Trainer",
    "train",
    "read_checkpoint",
    "save_weights",
    "Processes",
    "init_from_environment",
]
