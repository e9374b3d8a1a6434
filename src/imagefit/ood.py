"""Is a photo like the training photos? An out-of-distribution ("unknown") score.

The score is the cosine distance from a photo's L2-normalised pooled backbone
features to its k-th nearest training photo (Sun et al., 2022, "Out-of-distribution
detection with deep nearest neighbors"). It was chosen by measurement against the
maximum softmax probability, the energy of the logits and class-conditional
Mahalanobis distance (bench/ood.py, BENCHMARKS.md "Unknown photos"): the logits of a
two-class head say nothing about a shoe, while the features do.

The threshold is set on the validation photos, which the bank has never seen: by
default 95% of them are accepted. The sorted validation scores are kept, so a
user can ask for another acceptance rate later without retraining.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, invalid

OOD_FILE = "ood.safetensors"
METHOD = "knn-cosine"
DEFAULT_ACCEPT = 0.95
DEFAULT_K = 1
# Enough neighbours to cover a class's variety; 20,000 x 1280 float16 is 51 MB, and
# scoring one photo against it is one small matrix product.
MAX_BANK = 20_000
_BLOCK = 4096


def normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class OODInfo:
    """What the run record keeps about the detector (the tensors live in ``ood.safetensors``)."""

    method: str
    k: int
    threshold: float
    accept: float
    n_bank: int
    n_val: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "k": self.k,
            "threshold": self.threshold,
            "accept": self.accept,
            "n_bank": self.n_bank,
            "n_val": self.n_val,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> OODInfo:
        """Read the record's ``ood`` section, refusing what this version cannot use."""
        if not isinstance(raw, dict):
            raise ArtifactError(f"imagefit.json: ood must be an object, received {type(raw).__name__}")
        try:
            info = cls(
                method=str(raw["method"]),
                k=int(raw["k"]),
                threshold=float(raw["threshold"]),
                accept=float(raw["accept"]),
                n_bank=int(raw["n_bank"]),
                n_val=int(raw["n_val"]),
                digest=str(raw["digest"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"imagefit.json: ood section is damaged ({type(exc).__name__}: {exc})") from None
        if info.method != METHOD:
            raise ArtifactError(f"imagefit.json: invalid ood method: received {info.method!r}; allowed: {METHOD!r}")
        if not (1 <= info.k <= 100) or not np.isfinite(info.threshold) or not (0.0 <= info.threshold <= 2.0):
            raise ArtifactError(
                f"imagefit.json: ood k={info.k}, threshold={info.threshold} out of range; allowed: k 1..100, threshold 0..2"
            )
        if not (0.0 < info.accept <= 1.0):
            raise ArtifactError(f"imagefit.json: ood accept={info.accept} out of range; allowed: (0, 1]")
        return info


class UnknownDetector:
    """k-nearest-neighbour cosine distance to a bank of training features."""

    def __init__(self, bank: np.ndarray, val_scores: np.ndarray, *, k: int = DEFAULT_K, accept: float = DEFAULT_ACCEPT):
        if bank.ndim != 2 or len(bank) < k:
            raise invalid("ood bank", f"shape {bank.shape}", f"at least k={k} feature rows")
        if not (0.0 < accept <= 1.0):
            raise invalid("unknown_accept", accept, "a share in (0, 1]")
        self.bank = normalize(bank)
        self.val_scores = np.sort(np.asarray(val_scores, dtype=np.float32))
        self.k = int(k)
        self.accept = float(accept)
        self.threshold = threshold_for(self.val_scores, accept)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Distance (0 = a training photo, 2 = opposite) of each row of ``features`` ``[N, F]``."""
        x = normalize(features)
        out = np.empty(len(x), dtype=np.float32)
        for s in range(0, len(x), _BLOCK):
            sims = x[s : s + _BLOCK] @ self.bank.T
            kth = np.partition(sims, -self.k, axis=1)[:, -self.k]
            out[s : s + _BLOCK] = 1.0 - kth
        return out

    def unknown(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """True where a score is above the threshold (the stored one unless given)."""
        return np.asarray(scores) > (self.threshold if threshold is None else threshold)

    def with_accept(self, accept: float) -> UnknownDetector:
        """The same bank with the threshold set to accept ``accept`` of the validation photos."""
        return UnknownDetector(self.bank, self.val_scores, k=self.k, accept=accept)

    def save(self, folder: Path) -> OODInfo:
        """Write ``ood.safetensors`` atomically and return the record entry."""
        from safetensors.numpy import save

        from .paths import atomic_write_bytes

        data = save({"bank": self.bank.astype(np.float16), "val_scores": self.val_scores})
        atomic_write_bytes(Path(folder) / OOD_FILE, data)
        return OODInfo(
            METHOD, self.k, float(self.threshold), self.accept, len(self.bank), len(self.val_scores), hashlib.sha256(data).hexdigest()
        )

    @classmethod
    def load(cls, folder: Path, info: OODInfo) -> UnknownDetector:
        """Read ``ood.safetensors``, refusing a file that is not the one the record names."""
        from safetensors import SafetensorError
        from safetensors.numpy import load

        path = Path(folder) / OOD_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot read the unknown-photo detector: {exc.strerror or exc}") from None
        if hashlib.sha256(data).hexdigest() != info.digest:
            raise ArtifactError(f"{path} does not match its digest in imagefit.json (edited or damaged); retrain or restore the file")
        try:
            tensors = load(data)
        except SafetensorError as exc:
            raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
        bank, val = tensors.get("bank"), tensors.get("val_scores")
        if bank is None or val is None or bank.ndim != 2 or len(bank) != info.n_bank or len(val) != info.n_val:
            raise ArtifactError(f"{path}: tensors do not match imagefit.json (bank {info.n_bank} rows, {info.n_val} validation scores)")
        if not (np.isfinite(bank).all() and np.isfinite(val).all()):
            raise ArtifactError(f"{path}: holds non-finite values")
        det = cls(bank.astype(np.float32), val, k=info.k, accept=info.accept)
        det.threshold = info.threshold  # the stored threshold is authoritative (float16 rounding of the bank)
        return det


def threshold_for(val_scores: np.ndarray, accept: float) -> float:
    """The score below which ``accept`` of the validation photos fall."""
    if len(val_scores) == 0:
        raise invalid("validation scores", "none", "at least one validation photo")
    return float(np.quantile(np.asarray(val_scores, dtype=np.float64), accept, method="higher"))


def fit_detector(
    train_features: np.ndarray,
    val_features: np.ndarray,
    *,
    k: int = DEFAULT_K,
    accept: float = DEFAULT_ACCEPT,
    seed: int = 0,
    max_bank: int = MAX_BANK,
) -> UnknownDetector:
    """A detector whose bank is (a seeded sample of) the training features.

    Args:
        train_features: ``[N, F]`` pooled features of the training photos (original view).
        val_features: ``[M, F]`` of the validation photos, never in the bank: they set the threshold.
        k: Which neighbour's distance is the score.
        accept: Share of validation photos to accept as known.
        seed: For the sample when there are more than ``max_bank`` training photos.
        max_bank: Cap on the bank size.
    """
    bank = np.asarray(train_features, dtype=np.float32)
    if len(bank) > max_bank:
        keep = np.sort(np.random.default_rng(seed).choice(len(bank), max_bank, replace=False))
        bank = bank[keep]
    probe = UnknownDetector(bank, np.zeros(1, np.float32), k=k, accept=accept)
    return UnknownDetector(bank, probe.score(val_features), k=k, accept=accept)


def check_unknown_options(threshold: float | None, accept: float | None) -> None:
    """Refuse a bad ``unknown_threshold`` / ``unknown_accept`` (or both at once) before any photo is read."""
    if threshold is not None and accept is not None:
        raise invalid("unknown threshold", f"both --unknown-threshold {threshold} and --unknown-accept {accept}", "one of them")
    if threshold is not None and not (np.isfinite(threshold) and 0.0 <= threshold <= 2.0):
        raise invalid("unknown_threshold", threshold, "a cosine distance in [0, 2]")
    if accept is not None and not (np.isfinite(accept) and 0.0 < accept <= 1.0):
        raise invalid("unknown_accept", accept, "a share of validation photos in (0, 1], e.g. 0.99")


def load_detector(folder: Path, raw: dict[str, Any] | None) -> UnknownDetector | None:
    """The run's detector from its record's ``ood`` section, or None for a run without one."""
    return None if raw is None else UnknownDetector.load(folder, OODInfo.from_dict(raw))


def resolve_threshold(det: UnknownDetector, threshold: float | None = None, accept: float | None = None) -> float:
    """The threshold to use: ``threshold`` if given, else the one accepting ``accept`` of the validation photos, else the stored one."""
    check_unknown_options(threshold, accept)
    if threshold is not None:
        return float(threshold)
    return det.threshold if accept is None else threshold_for(det.val_scores, accept)
