"""The run record: what ``imagefit.json`` holds, as typed dataclasses.

In the style of timm's ``PretrainedCfg``: one :class:`RunRecord` with nested
typed parts, written by training and read by everything that opens a run
(the loader, compare, interpret, serve). :meth:`RunRecord.from_dict` checks
every type and value against :mod:`imagefit.bounds` before anything runs, and
raises :class:`~imagefit.errors.ArtifactError` with the field's name, what was
received and what is allowed. :meth:`RunRecord.to_dict` gives back the JSON
form; keys this version does not know are kept, so a record read and written
again loses nothing.

Format versions: 1 is every ``imagefit.json`` written so far (the sections
``data``, ``metrics``, ``config``... optional, as the first files lacked them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import bounds
from .config import RunConfig
from .data.transforms import Preprocess
from .errors import ArtifactError, ImagefitError

META_FILE = "imagefit.json"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


def _error(source: str) -> bounds.ErrorFactory:
    return lambda msg: ArtifactError(f"{source}: {msg}")


def _check(value: Any, kind: type | tuple[type, ...], name: str, source: str = META_FILE) -> Any:
    """``value`` if it has type ``kind`` (a bool is no number), else an ArtifactError naming both."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
    if not ok:
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ArtifactError(f"{source}: {name} must be {want}, received {type(value).__name__} {value!r:.60}")
    return value


def _optional(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], name: str, source: str) -> Any:
    value = raw.get(key)
    return None if value is None else _check(value, kind, name, source)


@dataclass(frozen=True)
class BackboneInfo:
    """Which backbone, and which exact weights (``digest``: a content hash, hexadecimal)."""

    name: str
    num_features: int
    architecture: str | None = None
    digest: str | None = None
    weights: str | None = None

    @classmethod
    def from_dict(cls, raw: Any, source: str = META_FILE) -> BackboneInfo:
        _check(raw, dict, "backbone", source)
        name = _check(raw.get("name"), str, "backbone.name", source)
        n = _check(raw.get("num_features"), int, "backbone.num_features", source)
        if n < 1:
            raise ArtifactError(f"{source}: backbone.num_features must be positive, received {n}")
        bounds.check("backbone.num_features", n, bounds.NUM_FEATURES, _error(source))
        digest = raw.get("digest")
        # The digest names cache files (features, ONNX graphs): only hex, never a path.
        if digest is not None and not (isinstance(digest, str) and _is_hex(digest)):
            raise ArtifactError(f"{source}: backbone.digest must be a hexadecimal string, received {digest!r:.60}")
        return cls(
            name=name,
            num_features=n,
            architecture=_optional(raw, "architecture", str, "backbone.architecture", source),
            digest=digest,
            weights=_optional(raw, "weights", str, "backbone.weights", source),
        )


def _is_hex(text: str) -> bool:
    return 1 <= len(text) <= 128 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class HeadInfo:
    """The classification head's shape: hidden units (0: none), dropout, outputs (1 for two classes)."""

    hidden: int
    dropout: float
    out_features: int

    @classmethod
    def from_dict(cls, raw: Any, source: str = META_FILE) -> HeadInfo:
        _check(raw, dict, "head", source)
        hidden = _check(raw.get("hidden"), int, "head.hidden", source)
        out = _check(raw.get("out_features"), int, "head.out_features", source)
        dropout = _check(raw.get("dropout"), (int, float), "head.dropout", source)
        if hidden not in bounds.HIDDEN or out < 1 or out > bounds.N_CLASSES.high or dropout not in bounds.HEAD_DROPOUT:
            raise ArtifactError(
                f"{source}: head needs {bounds.HIDDEN.low:g} <= hidden <= {bounds.HIDDEN.high:g}, 1 <= out_features <= "
                f"{bounds.N_CLASSES.high:g} and 0 <= dropout < 1, received hidden={hidden}, out_features={out}, dropout={dropout}"
            )
        return cls(hidden, float(dropout), out)


@dataclass(frozen=True)
class DataInfo:
    """Where the photos came from and how many were used."""

    train: str | None = None
    val: str | None = None
    n_train: int | None = None
    n_val: int | None = None

    @classmethod
    def from_dict(cls, raw: Any, source: str = META_FILE) -> DataInfo:
        _check(raw, dict, "data", source)
        return cls(
            train=_optional(raw, "train", str, "data.train", source),
            val=_optional(raw, "val", str, "data.val", source),
            n_train=_optional(raw, "n_train", int, "data.n_train", source),
            n_val=_optional(raw, "n_val", int, "data.n_val", source),
        )


def preprocess_from_dict(raw: Any, source: str = META_FILE) -> Preprocess:
    """The saved preprocessing, every value checked against :mod:`imagefit.bounds`."""
    _check(raw, dict, "preprocess", source)
    err = _error(source)
    _check(raw.get("input_size"), int, "preprocess.input_size", source)
    for key in ("mean", "std"):
        v = raw.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(bounds.is_number(x) for x in v)):
            raise ArtifactError(f"{source}: preprocess.{key} must be a list of 3 numbers, received {v!r:.60}")
    bounds.check("preprocess.input_size", raw["input_size"], bounds.INPUT_SIZE, err)
    bounds.check_channels("preprocess.mean", raw["mean"], bounds.MEAN, err)
    bounds.check_channels("preprocess.std", raw["std"], bounds.STD, err)
    bounds.check("preprocess.crop_pct", raw.get("crop_pct", 0.875), bounds.CROP_PCT, err)
    bounds.check_interpolation(raw.get("interpolation", "bicubic"), err)
    try:
        return Preprocess.from_dict(raw)
    except (ImagefitError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{source}: preprocess: {exc}") from None


def _classes(raw: Any, source: str) -> list[str]:
    _check(raw, list, "classes", source)
    if len(raw) < 2 or not all(isinstance(c, str) for c in raw):
        raise ArtifactError(f"{source}: classes must be a list of at least 2 strings, received {raw!r:.100}")
    bounds.check_classes(raw, _error(source))
    return list(raw)


def _temperature(raw: Any, source: str) -> float:
    if not bounds.is_number(raw) or not raw > 0:
        raise ArtifactError(f"{source}: temperature must be a positive number, received {raw!r:.60}")
    bounds.check("temperature", raw, bounds.TEMPERATURE, _error(source))
    return float(raw)


# Keys read into typed fields; any other top-level key is kept in RunRecord.extra.
_KNOWN = (
    "format_version created classes backbone preprocess head temperature config train_counts data metrics "
    "skipped versions seconds settings ood tracking features tta"
).split()


@dataclass
class RunRecord:
    """Everything ``imagefit.json`` says about a trained model.

    Required: ``classes``, ``backbone``, ``preprocess``, ``head``. The rest is
    optional so that the first files written (which lacked them) still load.
    ``settings`` holds the values training actually used
    (:meth:`imagefit.config.ResolvedSettings.to_dict`); ``ood`` and
    ``tracking`` are room for later sections, kept as plain dicts.
    """

    classes: list[str]
    backbone: BackboneInfo
    preprocess: Preprocess
    head: HeadInfo
    temperature: float = 1.0
    config: RunConfig | None = None
    settings: dict[str, Any] | None = None
    train_counts: dict[str, int] | None = None
    data: DataInfo | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    created: str | None = None
    format_version: int = FORMAT_VERSION
    ood: dict[str, Any] | None = None
    tracking: dict[str, Any] | None = None
    # The engine and precision the head's features were computed in ({"engine": "openvino", "precision": "bf16"}):
    # prediction rebuilds the same precision (None: a run saved before this was recorded).
    features: dict[str, str] | None = None
    # Predict with flip averaging unless the caller says otherwise: the model was chosen (and its
    # temperature fitted) predicting this way (``--budget`` runs may choose it).
    tta: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def val_metrics(self) -> dict[str, Any]:
        """The validation metrics (``metrics["val"]``), empty when not recorded."""
        val = self.metrics.get("val")
        return val if isinstance(val, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with ``format_version`` first; unset optional parts are left out."""
        out: dict[str, Any] = {"format_version": self.format_version}
        if self.created is not None:
            out["created"] = self.created
        out["classes"] = list(self.classes)
        out["backbone"] = {k: v for k, v in dataclasses.asdict(self.backbone).items() if v is not None}
        out["preprocess"] = self.preprocess.to_dict()
        out["head"] = dataclasses.asdict(self.head)
        out["temperature"] = self.temperature
        optional: dict[str, Any] = {
            "config": None if self.config is None else self.config.to_dict(),
            "settings": self.settings,
            "train_counts": self.train_counts,
            "data": None if self.data is None else dataclasses.asdict(self.data),
            "metrics": self.metrics or None,
            "skipped": self.skipped or None,
            "versions": self.versions or None,
            "seconds": self.seconds,
            "ood": self.ood,
            "tracking": self.tracking,
            "features": self.features,
            "tta": True if self.tta else None,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: Any, source: str = META_FILE) -> RunRecord:
        """Build a record from parsed JSON, checking every type and bound.

        Args:
            raw: What ``json.load`` returned.
            source: Names the file in error messages.

        Raises:
            ArtifactError: naming the field, the value received and what is allowed.
        """
        _check(raw, dict, "the file", source)
        classes = _classes(raw.get("classes"), source)
        backbone = BackboneInfo.from_dict(raw.get("backbone"), source)
        _check(raw.get("preprocess"), dict, "preprocess", source)
        head = HeadInfo.from_dict(raw.get("head"), source)
        preprocess = preprocess_from_dict(raw["preprocess"], source)
        temperature = _temperature(raw.get("temperature", 1.0), source)
        fv = raw.get("format_version")
        if fv not in SUPPORTED_VERSIONS or isinstance(fv, bool):
            raise ArtifactError(f"{source}: format_version {fv!r:.20} is not supported (this imagefit reads {FORMAT_VERSION})")
        return cls(
            classes=classes,
            backbone=backbone,
            preprocess=preprocess,
            head=head,
            temperature=temperature,
            config=_config(raw.get("config"), source),
            settings=_optional(raw, "settings", dict, "settings", source),
            train_counts=_counts(raw.get("train_counts"), source),
            data=None if raw.get("data") is None else DataInfo.from_dict(raw["data"], source),
            metrics=_optional(raw, "metrics", dict, "metrics", source) or {},
            skipped=_skipped(raw.get("skipped"), source),
            versions=_optional(raw, "versions", dict, "versions", source) or {},
            seconds=_optional(raw, "seconds", (int, float), "seconds", source),
            created=_optional(raw, "created", str, "created", source),
            format_version=fv,
            ood=_optional(raw, "ood", dict, "ood", source),
            tracking=_optional(raw, "tracking", dict, "tracking", source),
            features=_features(raw.get("features"), source),
            tta=bool(_optional(raw, "tta", bool, "tta", source)),
            extra={k: v for k, v in raw.items() if k not in _KNOWN},
        )


def _config(raw: Any, source: str) -> RunConfig | None:
    if raw is None:
        return None
    try:
        return RunConfig.from_dict(raw)
    except ImagefitError as exc:
        raise ArtifactError(f"{source}: config: {exc}") from None


def _features(raw: Any, source: str) -> dict[str, str] | None:
    if raw is None:
        return None
    _check(raw, dict, "features", source)
    for k, v in raw.items():
        _check(v, str, f"features[{k!r:.40}]", source)
    return dict(raw)


def _counts(raw: Any, source: str) -> dict[str, int] | None:
    if raw is None:
        return None
    _check(raw, dict, "train_counts", source)
    for k, v in raw.items():
        _check(v, int, f"train_counts[{k!r:.40}]", source)
    return dict(raw)


def _skipped(raw: Any, source: str) -> list[dict[str, str]]:
    if raw is None:
        return []
    _check(raw, list, "skipped", source)
    for item in raw:
        _check(item, dict, "skipped[]", source)
    return list(raw)
