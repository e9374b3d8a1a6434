"""Nested, validated run configuration, saved beside every model.

Each dataclass validates itself in ``__post_init__`` so that a bad value fails
before any work starts, with a message naming what was received and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import bounds
from .errors import ConfigError, invalid

if TYPE_CHECKING:
    from .data.transforms import Preprocess
    from .models.registry import BackboneSpec

AUGMENTS = ("none", "light", "heavy")
STRATEGIES = ("linear", "finetune", "full")
OPTIMIZERS = ("adam", "adamw", "sgd")
LOADERS = ("auto", "pillow", "device")
# What a CPU computes the frozen backbone's features in (imagefit.engines.cpu.PRECISIONS; this layer may not import it).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRESETS = ("fast", "good", "best")
# `--model auto`: lite0 first; a stronger backbone when lite0 gets under AUTO_ENOUGH of validation right (search/auto).
AUTO_MODEL, FIRST_BACKBONE, AUTO_ENOUGH = "auto", "lite0", 0.98
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
SCHEDULES = ("plateau", "cosine", "onecycle")  # imagefit.train.schedules.SCHEDULES
FLIPS = ("none", "horizontal", "vertical", "both")
# Bounds of the augmentation knobs (Keras ImageDataGenerator's): beyond them a photo is mostly fill.
AUG_BOUNDS = {"rotation": (0.0, 180.0), "zoom": (0.0, 0.9), "shift": (0.0, 0.5), "shear": (0.0, 45.0), "brightness": (0.0, 0.9)}
# Whether each monitor improves downwards or upwards: explicit, never guessed from the name.
MONITOR_MODES = {"val_loss": "min", "loss": "min", "val_accuracy": "max", "accuracy": "max"}

# Defaults of each strategy's main phase (finetune's: fastai's fine_tune, one cycle, the last block at 5e-4, earlier down to a tenth).
DEFAULT_EPOCHS = {"linear": 60, "finetune": 4, "full": 10}
DEFAULT_LR = {"linear": 3e-3, "finetune": 5e-4, "full": 1e-3}
DEFAULT_SCHEDULE = {"linear": "plateau", "finetune": "onecycle", "full": "plateau"}
# finetune's head phase is exactly the linear strategy with its defaults.
HEAD_LR = DEFAULT_LR["linear"]
HEAD_BATCH_SIZE = 128
IMAGE_BATCH_SIZE = {"cpu": 32, "cuda": 256}


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text (and allowed values), which the CLI options are generated from."""
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where the photos come from and how they are split and augmented."""

    val_split: float = _opt(0.2, "Fraction of the training photos held out for validation when DATA has no validation folder.")
    labels_from_filename: bool = _opt(False, "Take labels from file names (cat.1.jpg) instead of class folders.")
    filename_label_regex: str | None = _opt(
        None, "Regular expression giving the label from a file name (group `label`, else group 1); implies labels_from_filename."
    )
    augment: str = _opt("none", "Augmentation preset for training photos.", AUGMENTS)
    rotation: float | None = _opt(None, "Augmentation: random rotation up to this many degrees (0 to 180); default: the preset's.")
    zoom: float | None = _opt(None, "Augmentation: random zoom in/out by up to this fraction (0 to 0.9); default: the preset's.")
    shift: float | None = _opt(None, "Augmentation: random shift by up to this fraction of width/height (0 to 0.5); default: the preset's.")
    shear: float | None = _opt(None, "Augmentation: random shear up to this many degrees (0 to 45); default: the preset's.")
    flip: str | None = _opt(None, "Augmentation: random flips; default: the preset's (horizontal unless none).", FLIPS)
    brightness: float | None = _opt(None, "Augmentation: random brightness change by up to this fraction (0 to 0.9); default: none.")
    img_size: int | None = _opt(None, "Input size in pixels (32 to 1024); default: the backbone's own.")
    workers: int = _opt(0, "Processes decoding photos; 0 chooses automatically.")
    loader: str = _opt("auto", "How training photos are decoded: Pillow on CPU, nvjpeg on the GPU, or auto.", LOADERS)

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
        if self.filename_label_regex is not None:
            check_label_regex(self.filename_label_regex)
        for knob, (low, high) in AUG_BOUNDS.items():
            value = getattr(self, knob)
            if value is not None and not low <= value <= high:
                raise invalid(knob, value, f"a number from {low:g} to {high:g}")
        if self.flip is not None and self.flip not in FLIPS:
            raise invalid("flip", self.flip, FLIPS)

    def augment_knobs(self) -> dict[str, Any]:
        """The augmentation knobs that are set (None means: the preset's value)."""
        return {k: getattr(self, k) for k in (*AUG_BOUNDS, "flip") if getattr(self, k) is not None}


def check_label_regex(pattern: str) -> re.Pattern[str]:
    """The label regex compiled, if it compiles and captures the label (group ``label``, else group 1); also used by data.labels."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise invalid("filename_label_regex", pattern, f"a valid regular expression ({exc})") from None
    if compiled.groups < 1:
        raise invalid("filename_label_regex", pattern, "a regular expression with a group capturing the label, e.g. ^([a-z]+)_")
    return compiled


def _check_budget(budget: str) -> None:
    """``90s``, ``10m``, ``1.5h`` or a number of seconds (parsed by :func:`imagefit.search.parse_budget`)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", budget)
    if m is None or not float(m.group(1)) > 0:
        raise invalid("budget", budget, "a positive duration such as 90s, 10m or 1.5h")


@dataclass
class ModelConfig:
    """Which backbone, and the head put on top of it."""

    name: str = _opt(AUTO_MODEL, "Backbone: a name from `imagefit models`, a timm name, or auto (lite0, or lite0+lite1+lite2 if better).")
    pretrained: bool = _opt(True, "Start from pretrained weights (read offline).")
    hidden: int = _opt(0, "Units of a hidden layer in the head; 0 for none (the backbone's default).")
    dropout: float = _opt(0.2, "Dropout before the head's last layer (0 to 0.95).")
    precision: str = _opt(
        "auto", "CPU feature precision: auto (bf16 with AMX, else fp32), fp32, bf16, int8 (calibrated on train).", PRECISIONS
    )

    @property
    def backbone(self) -> str:
        """The backbone trained first (``auto`` starts with lite0)."""
        return FIRST_BACKBONE if self.name == AUTO_MODEL else self.name

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise invalid("model", self.name, "a backbone name (see `imagefit models`) or auto")
        if self.hidden < 0:
            raise invalid("hidden", self.hidden, "0 (no hidden layer) or a positive integer")
        bounds.check("dropout", self.dropout, bounds.DROPOUT)
        if self.precision not in PRECISIONS:
            raise invalid("precision", self.precision, PRECISIONS)


@dataclass
class TrainConfig:
    """How the classifier is trained."""

    strategy: str = _opt(
        "linear", "linear: train a head on frozen features; finetune: then unfreeze the last blocks; full: train everything.", STRATEGIES
    )
    epochs: int | None = _opt(None, "Epochs of the main phase (default: 60 linear, 4 finetune, 10 full).")
    head_epochs: int = _opt(DEFAULT_EPOCHS["linear"], "Epochs of finetune's first phase (the head on frozen features).")
    head_lr: float | None = _opt(None, "Learning rate of finetune's first phase (the head on frozen features); default 0.003.")
    batch_size: int | None = _opt(None, "Mini-batch size of the main phase (default: 128 linear; 32 on a CPU, 256 on a GPU for images).")
    lr: str | float | None = _opt(None, "Main phase's learning rate, or auto (lr-find); default 0.003 linear, 0.0005 finetune, 0.001 full.")
    schedule: str | None = _opt(None, "LR schedule; default: onecycle for finetune (fastai's fine_tune), else plateau.", SCHEDULES)
    optimizer: str = _opt("adam", "Optimizer (sgd uses momentum 0.9).", OPTIMIZERS)
    weight_decay: float = _opt(0.0, "Weight decay (L2 penalty).")
    unfreeze: float = _opt(0.25, "finetune: fraction of the backbone's blocks to train, or a whole number of blocks.")
    class_weights: bool = _opt(False, "Weight the loss by inverse class frequency (for unbalanced classes).")
    monitor: str = _opt("val_loss", "Metric that early stopping, learning-rate reduction and the best checkpoint follow.", MONITORS)
    patience: int = _opt(5, "Epochs without improvement before early stopping.")
    lr_patience: int = _opt(2, "Epochs without improvement before the learning rate is reduced.")
    lr_factor: float = _opt(0.3, "Factor the learning rate is multiplied by on a plateau.")
    min_lr: float = _opt(1e-6, "Lowest learning rate a plateau reduces to.")
    seed: int = _opt(0, "Random seed (split, shuffling, augmentation).")
    unknown_accept: float = _opt(
        0.95, "Share of validation photos the unknown-photo detector accepts as known; it sets the threshold stored with the run."
    )
    mlflow: bool = _opt(False, "log the run to MLflow (also when MLFLOW_TRACKING_URI is set)")
    budget: str | None = _opt(None, "Search for the most accurate model this time buys (e.g. 90s, 5m, 1.5h); saved as one normal run.")
    preset: str | None = _opt(
        None, "Quality preset of the search: fast, good or best (a budget of its own unless --budget is given).", PRESETS
    )

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
        if isinstance(self.lr, str) and self.lr != "auto":
            try:
                self.lr = float(self.lr)
            except ValueError:
                raise invalid("lr", self.lr, "a number or auto") from None
        if self.lr is not None and self.lr != "auto":
            bounds.check("lr", self.lr, bounds.LR)
        if self.head_lr is not None:
            bounds.check("head_lr", self.head_lr, bounds.LR)
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise invalid("schedule", self.schedule, SCHEDULES)
        if self.weight_decay < 0:
            raise invalid("weight_decay", self.weight_decay, "a number >= 0")
        if self.unfreeze <= 0 or (self.unfreeze >= 1 and self.unfreeze != int(self.unfreeze)):
            raise invalid("unfreeze", self.unfreeze, "a fraction in (0, 1) or a whole number of blocks >= 1")
        if self.patience < 1 or self.lr_patience < 1:
            raise invalid("patience", (self.patience, self.lr_patience), "positive integers")
        bounds.check("lr_factor", self.lr_factor, bounds.LR_FACTOR)
        if not (0.0 < self.unknown_accept <= 1.0):
            raise invalid("unknown_accept", self.unknown_accept, "a share of validation photos in (0, 1], e.g. 0.95")
        if self.budget is not None:
            _check_budget(self.budget)
        if self.preset is not None and self.preset not in PRESETS:
            raise invalid("preset", self.preset, PRESETS)
        if (self.budget is not None or self.preset is not None) and self.strategy != "linear":
            # The search fits heads on frozen features; fine-tuning is not one of its candidates yet.
            raise invalid("strategy with --budget or --preset", self.strategy, "linear")

    @property
    def resolved_epochs(self) -> int:
        """Epochs of the main phase: head epochs for linear, backbone epochs otherwise."""
        if self.epochs is not None:
            return self.epochs
        return DEFAULT_EPOCHS[self.strategy]

    @property
    def resolved_lr(self) -> float:
        """Learning rate of the main phase (the default until ``auto`` is found by the sweep)."""
        if isinstance(self.lr, float):
            return self.lr
        return DEFAULT_LR[self.strategy]

    @property
    def resolved_batch_size(self) -> int:
        """Mini-batch size: large for cached features, small for images on a CPU."""
        if self.batch_size is not None:
            return self.batch_size
        return HEAD_BATCH_SIZE if self.strategy == "linear" else IMAGE_BATCH_SIZE["cpu"]


@dataclass
class RunConfig:
    """Everything that defines a run; saved as ``config`` in ``imagefit.json``."""

    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Photos: split, augmentation, input size, decoding."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Backbone and head."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Strategy, schedule, optimizer and callbacks."})

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        """Build a config from a dict read from JSON, checking names and types (ConfigError otherwise)."""
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
        """Build a config from flat keyword options (``model=`` the backbone, the others a field); ConfigError lists the allowed ones."""
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
    members = [m for m in ann.split("|") if m != "None"]
    if len(members) > 1 and value is not None:  # a union such as str | float (``lr``: a number or "auto")
        if isinstance(value, str) and "float" in members and value != "auto":
            try:
                return float(value)  # the CLI passes "--lr 0.001" as text
            except ValueError:
                raise invalid(name, value, "a value of type float, or auto") from None
        for member in members:
            try:
                return _coerce(name, member, value)
            except ConfigError:
                pass
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


@dataclass(frozen=True)
class PhaseSettings:
    """What one training phase actually runs with."""

    epochs: int
    lr: float
    batch_size: int


@dataclass(frozen=True)
class ResolvedSettings:
    """The effective settings of a run: the config with every default filled in, once.

    Attributes:
        preprocess: The backbone's preprocessing with ``img_size`` applied.
        hidden: Hidden units of the head (the backbone's default when not set).
        dropout: The head's dropout.
        head: The head phase on cached features (``linear``, and ``finetune``'s first phase); None for ``full``.
        images: The phase on images (``finetune``'s second phase, ``full``); None for ``linear``.
        loader: How training images are decoded (``pillow`` or ``device``).
        schedule: The learning-rate schedule of both phases.
    """

    preprocess: Preprocess
    hidden: int
    dropout: float
    head: PhaseSettings | None
    images: PhaseSettings | None
    loader: str
    schedule: str = "plateau"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, saved as ``settings`` in the run record."""
        out = dataclasses.asdict(self)
        out["preprocess"] = self.preprocess.to_dict()
        return out


def resolve(config: RunConfig, spec: BackboneSpec, device_type: str = "cpu") -> ResolvedSettings:
    """Fill in every default of ``config`` for backbone ``spec`` on ``device_type`` (``cpu``, ``cuda``).

    The image phase on a GPU uses batches of 256 with the learning rate scaled linearly from its batch-32
    default (Goyal et al.; finetune's at most full's rate), unless either is set.
    """
    t, m = config.train, config.model
    pre = spec.preprocess
    if config.data.img_size is not None:
        pre = dataclasses.replace(pre, input_size=int(config.data.img_size))
    hidden = m.hidden or spec.default_hidden
    dropout = m.dropout if m.hidden or not spec.default_hidden else spec.default_dropout
    head = images = None
    if t.strategy == "linear":
        head = PhaseSettings(t.resolved_epochs, t.resolved_lr, t.resolved_batch_size)
    elif t.strategy == "finetune":
        head = PhaseSettings(t.head_epochs, t.head_lr if t.head_lr is not None else HEAD_LR, HEAD_BATCH_SIZE)
    if t.strategy != "linear":
        bs = t.batch_size or IMAGE_BATCH_SIZE.get(device_type, IMAGE_BATCH_SIZE["cpu"])
        scaled = DEFAULT_LR[t.strategy] * bs / IMAGE_BATCH_SIZE["cpu"]
        lr = t.lr if isinstance(t.lr, float) else min(scaled, DEFAULT_LR["full"]) if t.strategy == "finetune" else scaled
        images = PhaseSettings(t.resolved_epochs, lr, bs)
    loader = config.data.loader
    if loader == "auto":
        # nvjpeg decodes several times faster than Pillow on a GPU machine (BENCHMARKS.md); on a CPU Pillow wins.
        loader = "device" if device_type == "cuda" else "pillow"
    return ResolvedSettings(pre, hidden, dropout, head, images, loader, t.schedule or DEFAULT_SCHEDULE[t.strategy])
