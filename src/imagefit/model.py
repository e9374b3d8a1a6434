"""A trained classifier loaded from a run folder: predict and evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import WEIGHTS_FILE, check_digest, load_weights, nonfinite_tensor, read_record, restore_int8_graph, verify_backbone
from .data.discover import ImageSet, discover, list_images
from .data.load import SkipLog
from .engine import Engine, graph_path, load_precision, model_key
from .errors import ArtifactError, DataError, ImagefitError
from .evaluate import calibrated_metrics
from .features import FeatureCache, extract
from .models.heads import Head, probabilities
from .models.registry import create_backbone, get_spec, state_digest
from .ood import UnknownDetector, load_detector, resolve_threshold
from .predict import Predictions, make_records
from .record import RunRecord
from .ui import UI


class Model:
    """A classifier ready to predict: backbone engine + head + calibration.

    Build with :func:`imagefit.load`.
    """

    def __init__(self, path: Path, record: RunRecord, head: Head, backbone: torch.nn.Module | None = None):
        self.path = Path(path)
        self.record = record
        self.classes: list[str] = list(record.classes)
        self.preprocess = record.preprocess
        self.head = head.eval()
        self._backbone = backbone.eval() if backbone is not None else None
        self.temperature = record.temperature
        self._engine: Engine | None = None
        self.engine_kind = "auto"
        self._digest_verified = False

    @property
    def tta(self) -> bool:
        """Whether this model predicts with flip averaging by default (recorded with the run)."""
        return self.record.tta

    def _tta(self, tta: bool | None) -> bool:
        return self.record.tta if tta is None else bool(tta)

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The run record in its JSON form (as ``imagefit.json`` holds it)."""
        return self.record.to_dict()

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Load a run folder (safetensors + JSON only).

        The record is checked (types and bounds), the head's tensors loaded and
        checked finite, and the backbone's weights verified against the
        record's digest, before anything can answer: a changed weight file is
        refused, never answered from a cache keyed by the old digest. The
        backbone itself is built when first needed (the torch engine, an ONNX
        graph not yet cached, or :attr:`backbone`): predicting from a cached
        graph never builds it.

        Raises:
            ArtifactError: missing, malformed, mismatched or non-finite files.
        """
        folder = Path(path)
        record = read_record(folder)
        try:
            get_spec(record.backbone.name)
        except ImagefitError as exc:
            raise ArtifactError(f"{folder}: {exc}") from None
        h = record.head
        head = Head(record.backbone.num_features, len(record.classes), hidden=h.hidden, dropout=h.dropout)
        if head.out_features != h.out_features:
            raise ArtifactError(f"{folder}: head has {h.out_features} outputs but {len(record.classes)} classes need {head.out_features}")
        load_weights(folder, head, prefix="head.", others=("backbone.",))
        bad = nonfinite_tensor(head.state_dict().items())
        if bad is not None:
            raise ArtifactError(f"{folder / WEIGHTS_FILE}: tensor head.{bad} holds NaN or infinite values")
        model = cls(folder, record, head)
        digest = record.backbone.digest
        # A file saved without the backbone's tensor order is verified when the backbone is built,
        # which the engine and the feature cache wait for (see _verified_digest).
        model._digest_verified = digest is None or verify_backbone(folder, digest)
        return model

    @property
    def backbone(self) -> torch.nn.Module:
        """The torch backbone with the run's weights, built on first use.

        Raises:
            ArtifactError: the weights file does not fit the backbone, holds
                non-finite values, or does not match the recorded digest.
        """
        if self._backbone is None:
            try:
                backbone, _ = create_backbone(self.record.backbone.name, pretrained=False)
            except ImagefitError as exc:
                raise ArtifactError(f"{self.path}: {exc}") from None
            # Every backbone tensor is checked (names and shapes); load() checked the head's.
            load_weights(self.path, backbone, prefix="backbone.", others=("head.",))
            path = self.path / WEIGHTS_FILE
            bad = nonfinite_tensor(backbone.state_dict().items())
            if bad is not None:
                raise ArtifactError(f"{path}: tensor backbone.{bad} holds NaN or infinite values")
            if self.record.backbone.digest is not None:
                # The file may have changed since load() verified it: the built weights are what answers.
                check_digest(path, self.record.backbone.digest, state_digest(backbone))
            self._backbone = backbone.eval()
            self._digest_verified = True
        return self._backbone

    def _verified_digest(self) -> str | None:
        """The record's backbone digest, once checked against the weights (it keys both caches)."""
        if not self._digest_verified:
            self.backbone  # noqa: B018 - building the backbone verifies its digest
        return self.record.backbone.digest

    @property
    def engine(self) -> Engine:
        """The backbone's inference engine, built on first use."""
        if self._engine is None:
            # The digest keys the cached graph; a run without one gets it from its weights.
            digest = self._verified_digest() or state_digest(self.backbone)
            # The precision the head was trained on (old runs: auto); fp32 with a note where this machine cannot.
            recorded = (self.record.features or {}).get("precision")
            precision, note = load_precision(recorded, self.engine_kind)
            if note:
                UI().info(note)
            key = model_key(self.record.backbone.name, digest)
            cached = graph_path(key, self.preprocess, precision)
            if precision.startswith("int8-") and recorded == precision and not cached.is_file():
                restore_int8_graph(self.path, self.record.features or {}, cached)
            self._engine = Engine(lambda: self.backbone, self.preprocess, key, self.engine_kind, precision=precision)
        return self._engine

    def _cache(self) -> FeatureCache | None:
        # Only a verified digest may key cached features: changed weights must never meet the old entries.
        digest = self._verified_digest()
        return FeatureCache.for_backbone(digest, self.preprocess) if digest else None

    def features(
        self, paths: Sequence[Path], skipped: SkipLog, *, tta: bool = False, ui: UI | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backbone features of readable photos: ``(indices, [n, views, F])``."""
        ui = ui or UI(False)
        views = ("orig", "flip") if tta else ("orig",)
        with ui.task("features", len(paths)) as advance:
            feats = extract(list(paths), self.engine, self.preprocess, skipped, cache=self._cache(), views=views, progress=advance)
        return feats.indices, feats.values

    def head_probs(self, values: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Head + (calibrated) probabilities, averaged over views."""
        t = self.temperature if temperature is None else temperature
        if len(values) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        n, v, f = values.shape
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values.reshape(n, -1))).any(1).sum())
            raise ArtifactError(f"{self.path}: the backbone gave NaN or infinite features for {bad} of {n} photo(s); no answer is given")
        with torch.inference_mode():
            logits = self.head(torch.from_numpy(values.reshape(n * v, f)))
            if not bool(torch.isfinite(logits).all()):
                raise ArtifactError(f"{self.path}: the head gave NaN or infinite outputs; no answer is given")
            p = probabilities(logits, t).reshape(n, v, -1).mean(1)
        if not bool(torch.isfinite(p).all()):
            raise ArtifactError(f"{self.path}: temperature {t!r} gives NaN or infinite probabilities; no answer is given")
        return p.numpy()

    @cached_property
    def unknown_detector(self) -> UnknownDetector | None:
        """The run's unknown-photo detector (:mod:`imagefit.ood`), or None for a run trained without one.

        Raises:
            ArtifactError: ``ood.safetensors`` is missing, damaged or not the file the record names.
        """
        return load_detector(self.path, self.record.ood)

    def unknown_scores(self, values: np.ndarray) -> np.ndarray | None:
        """Unknown-photo scores of features ``[n, views, F]`` (the original view, as the detector was fit), or None."""
        det = self.unknown_detector
        return None if det is None else det.score(values[:, 0]) if len(values) else np.zeros(0, np.float32)

    def predict(
        self,
        paths: Sequence[str | Path] | str | Path,
        *,
        tta: bool | None = None,
        progress: bool = False,
        unknown: bool = True,
        unknown_threshold: float | None = None,
        unknown_accept: float | None = None,
    ) -> Predictions:
        """Predict files and folders (recursive). Unreadable files are skipped and listed.

        Args:
            paths: Image files and/or folders.
            tta: Average the prediction of the photo and its mirror image; None: as the
                run was saved (:attr:`tta`).
            progress: Show a progress bar.
            unknown: Flag photos unlike the training photos (records' ``unknown`` and
                ``unknown_score``; None when off or the run has no detector).
            unknown_threshold: Score above which a photo is unknown, instead of the run's threshold.
            unknown_accept: Or: the share of the run's validation photos to accept, e.g. 0.99.

        Returns:
            :class:`~imagefit.predict.Predictions`, one record per readable image.
        """
        if isinstance(paths, (str, Path)):
            paths = [paths]
        det = self.unknown_detector if unknown else None
        threshold = resolve_threshold(det, unknown_threshold, unknown_accept) if det is not None else None
        files = list_images(list(paths))
        skipped = SkipLog()
        idx, values = self.features(files, skipped, tta=self._tta(tta), ui=UI(progress))
        probs = self.head_probs(values)
        scores = self.unknown_scores(values) if det is not None else None
        records = make_records(files, idx, probs, self.classes, scores, threshold)
        return Predictions(records, self.classes, skipped, idx, probs, scores, threshold)

    def evaluate(
        self, data: str | Path | ImageSet, *, tta: bool | None = None, progress: bool = False, labels_from_filename: bool = False
    ) -> dict[str, Any]:
        """Metrics on a labeled set (any layout :func:`~imagefit.data.discover` reads).

        A folder with ``train/`` + ``val/`` is evaluated on its validation (or
        test) part. Returns at least ``accuracy`` and ``log_loss`` (of the
        calibrated model), plus ``ece``, the confusion matrix, per-class
        scores, ROC AUC, the dummy baseline, and ``calibration``: log loss and
        ECE without (``*_before``) and with (``*_after``) the run's temperature.
        """
        return self.evaluate_details(data, tta=tta, progress=progress, labels_from_filename=labels_from_filename).metrics

    def evaluate_details(
        self, data: str | Path | ImageSet, *, tta: bool | None = None, progress: bool = False, labels_from_filename: bool = False
    ) -> Evaluation:
        """As :meth:`evaluate`, also returning the per-photo labels and probabilities (for reports)."""
        if isinstance(data, ImageSet):
            images = data
        else:
            found = discover(data, labels_from_filename=labels_from_filename)
            images = found.val or (found.test if found.test is not None and found.test.labeled else None) or found.train
        if not images.labeled:
            raise DataError(f"{images.source}: evaluation needs labeled images")
        images = images.with_classes(self.classes)
        skipped = SkipLog()
        tta = self._tta(tta)
        idx, values = self.features(images.paths, skipped, tta=tta, ui=UI(progress))
        if len(idx) == 0:
            raise DataError(f"{images.source}: none of the {len(images)} files could be read")
        probs = self.head_probs(values)
        probs_uncal = self.head_probs(values, 1.0)
        y = np.asarray(images.labels)[idx]
        metrics = calibrated_metrics(y, probs_uncal, probs, self.temperature, self.classes, self.record.train_counts)
        metrics["n_skipped"] = len(skipped)
        metrics["skipped"] = skipped.as_list()
        metrics["tta"] = tta
        scores = self.unknown_scores(values)
        if scores is not None and self.unknown_detector is not None:
            # Share of these photos the run's detector calls unknown (about 1 - accept for photos like the training ones).
            metrics["unknown_share"] = float(np.mean(self.unknown_detector.unknown(scores)))
        paths = [Path(images.paths[int(i)]) for i in idx]
        return Evaluation(metrics, paths, y, probs_uncal, probs, str(images.source), scores)


@dataclass
class Evaluation:
    """What :meth:`Model.evaluate_details` measured, photo by photo."""

    metrics: dict[str, Any]
    paths: list[Path]  # readable photos, in evaluation order
    labels: np.ndarray  # [N] true labels
    probs_uncalibrated: np.ndarray  # [N, C] at temperature 1
    probs: np.ndarray  # [N, C] at the run's temperature (what predict returns)
    source: str = ""
    unknown_scores: np.ndarray | None = None  # [N] unknown-photo scores (None: the run has no detector)
