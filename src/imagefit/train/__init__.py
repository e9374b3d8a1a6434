"""Training: the loop and its callbacks."""

from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, MonitorCallback, ReduceLROnPlateau
from .loop import Interrupted, Trainer, make_optimizer

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "Interrupted",
    "ModelCheckpoint",
    "MonitorCallback",
    "ReduceLROnPlateau",
    "Trainer",
    "make_optimizer",
]
