"""Nested, validated run configuration, saved beside every model.

Each dataclass validates itself in ``__post_init__`` so that a bad value fails
before any work starts, with a message naming what was received and what is
allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import bounds
from .errors import ConfigError, invalid

AUGMENTS = ("none", "light", "heavy")
STRATEGIES = ("linear", "finetune", "full")
OPTIMIZERS = ("adam", "adamw", "sgd")
LOADERS = ("auto", "pillow", "device")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


@dataclass
class DataConfig:
    """Where the photos come from and how they are split and augmented."""

    val_split: float = 0.2
    labels_from_filename: bool = False
    augment: str = "none"
    img_size: int | None = None
    workers: int = 0
    loader: str = "auto"

    def __post_init__(self) -> None:
        bounds.check("val_split", self.val_split, bounds.VAL_SPLIT)
        if self.augment not in AUGMENTS:
            raise invalid("augment", self.augment, AUGMENTS)
        if self.img_size is not None:
            bounds.check("img_size", self.img_size, bounds.INPUT_SIZE)
        if self.loader not in LOADERS:
            raise invalid("loader", self.loader, LOADERS)
        if self.workers < 0:
            raise invalid("workers", self.workers, "0 (automatic) or a positive integer")


@dataclass
class ModelConfig:
    """Which backbone, and the head put on top of it."""

    name: str = "lite0"
    pretrained: bool = True
    hidden: int = 0
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise invalid("model", self.name, "a backbone name (see `imagefit models`)")
        if self.hidden < 0:
            raise invalid("hidden", self.hidden, "0 (no hidden layer) or a positive integer")
        bounds.check("dropout", self.dropout, bounds.DROPOUT)


@dataclass
class TrainConfig:
    """How the classifier is trained."""

    strategy: str = "linear"
    epochs: int | None = None
    head_epochs: int = 60
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    unfreeze: float = 0.25
    class_weights: bool = False
    monitor: str = "val_loss"
    patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.3
    min_lr: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise invalid("strategy", self.strategy, STRATEGIES)
        if self.optimizer not in OPTIMIZERS:
            raise invalid("optimizer", self.optimizer, OPTIMIZERS)
        if self.monitor not in MONITORS:
            raise invalid("monitor", self.monitor, MONITORS)
        if self.epochs is not None and self.epochs < 1:
            raise invalid("epochs", self.epochs, "a positive integer")
        if self.head_epochs < 1:
            raise invalid("head_epochs", self.head_epochs, "a positive integer")
        if self.batch_size is not None and self.batch_size < 1:
            raise invalid("batch_size", self.batch_size, "a positive integer")
        if self.lr is not None:
            bounds.check("lr", self.lr, bounds.LR)
        if self.weight_decay < 0:
            raise invalid("weight_decay", self.weight_decay, "a number >= 0")
        if self.unfreeze <= 0 or (self.unfreeze >= 1 and self.unfreeze != int(self.unfreeze)):
            raise invalid("unfreeze", self.unfreeze, "a fraction in (0, 1) or a whole number of blocks >= 1")
        if self.patience < 1 or self.lr_patience < 1:
            raise invalid("patience", (self.patience, self.lr_patience), "positive integers")
        bounds.check("lr_factor", self.lr_factor, bounds.LR_FACTOR)

    @property
    def resolved_epochs(self) -> int:
        """Epochs of the main phase: head epochs for linear, backbone epochs otherwise."""
        if self.epochs is not None:
            return self.epochs
        return {"linear": 60, "finetune": 3, "full": 10}[self.strategy]

    @property
    def resolved_lr(self) -> float:
        """Learning rate of the main phase."""
        if self.lr is not None:
            return self.lr
        return {"linear": 3e-3, "finetune": 1e-4, "full": 1e-3}[self.strategy]

    @property
    def resolved_batch_size(self) -> int:
        """Mini-batch size: large for cached features, small for images on a CPU."""
        if self.batch_size is not None:
            return self.batch_size
        return 128 if self.strategy == "linear" else 32


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config`` in ``imagefit.json``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        """Build a config from a dict read from JSON, checking names and types.

        Raises:
            ConfigError: on unknown keys or values of the wrong type.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a JSON object, received {type(raw).__name__}")
        parts: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            sub = raw.get(f.name, {})
            sub_cls = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}[f.name]
            parts[f.name] = _build(sub_cls, sub, f.name)
        return cls(**parts)

    @classmethod
    def from_options(cls, **options: Any) -> RunConfig:
        """Build a config from flat keyword options, as ``imagefit.train`` takes them.

        ``model=`` names the backbone; every other option names a field of one
        of the nested configs.

        Raises:
            ConfigError: on an unknown option, listing the allowed ones.
        """
        where: dict[str, str] = {}
        for section, sub_cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            for f in dataclasses.fields(sub_cls):
                where[f.name] = section
        where["model"] = "model"
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
        for key, value in options.items():
            if value is None:
                continue
            if key not in where:
                raise invalid("option", key, sorted(where))
            name = "name" if key == "model" else key
            sections[where[key]][name] = value
        return cls.from_dict(sections)


def _build(sub_cls: type, raw: Any, section: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config.{section} must be an object, received {type(raw).__name__}")
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(sub_cls)}
    for key, value in raw.items():
        if key not in fields:
            raise invalid(f"{section} option", key, sorted(fields))
        kwargs[key] = _coerce(f"{section}.{key}", fields[key].type, value)
    return sub_cls(**kwargs)


def _coerce(name: str, annotation: Any, value: Any) -> Any:
    """Check a JSON value against a field annotation (str form, as `from __future__` keeps it)."""
    ann = str(annotation).replace(" ", "")
    optional = ann.endswith("|None")
    base = ann.split("|")[0]
    if value is None:
        if optional:
            return None
        raise invalid(name, value, f"a value of type {base}")
    if base == "bool":
        if isinstance(value, bool):
            return value
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base == "str":
        if isinstance(value, str):
            return value
    raise invalid(name, value, f"a value of type {base}")
