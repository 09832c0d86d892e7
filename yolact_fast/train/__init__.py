"""Training: prior matching, the YOLACT loss and the training loop."""

from .distributed import Processes, init_from_environment
from .loss import LossWeights, encode, match, ohem_negatives, yolact_loss
from .trainer import TrainOptions, read_checkpoint, save_weights, train

__all__ = ["LossWeights", "encode", "match", "ohem_negatives", "yolact_loss", "TrainOptions",
           "train", "read_checkpoint", "save_weights", "Processes", "init_from_environment"]
