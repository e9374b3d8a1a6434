"""The unknown-photo detector: scores, threshold, save/load and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagefit.errors import ArtifactError, ConfigError
from imagefit.ood import OOD_FILE, OODInfo, UnknownDetector, fit_detector, threshold_for


def _clusters(rng: np.random.Generator, n: int, centres: np.ndarray, spread: float = 0.05) -> np.ndarray:
    idx = rng.integers(0, len(centres), n)
    return centres[idx] + spread * rng.standard_normal((n, centres.shape[1]))


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    known = rng.standard_normal((2, 64))
    other = rng.standard_normal((3, 64))
    return {
        "train": _clusters(rng, 300, known),
        "val": _clusters(rng, 200, known),
        "in": _clusters(rng, 200, known),
        "out": _clusters(rng, 200, other),
    }


def test_accepts_the_requested_share_of_validation_photos(data: dict[str, np.ndarray]) -> None:
    det = fit_detector(data["train"], data["val"], accept=0.9)
    assert np.mean(~det.unknown(det.score(data["val"]))) == pytest.approx(0.9, abs=0.01)


def test_separates_other_photos(data: dict[str, np.ndarray]) -> None:
    det = fit_detector(data["train"], data["val"])
    assert np.mean(det.unknown(det.score(data["out"]))) > 0.99
    assert np.mean(~det.unknown(det.score(data["in"]))) > 0.9


def test_score_is_zero_for_a_bank_photo_and_scale_free(data: dict[str, np.ndarray]) -> None:
    det = fit_detector(data["train"], data["val"])
    assert det.score(data["train"][:5]) == pytest.approx(0.0, abs=1e-5)
    assert det.score(10 * data["in"][:5]) == pytest.approx(det.score(data["in"][:5]), abs=1e-5)


def test_another_acceptance_rate_without_retraining(data: dict[str, np.ndarray]) -> None:
    det = fit_detector(data["train"], data["val"], accept=0.95)
    strict = det.with_accept(0.5)
    assert strict.threshold < det.threshold
    assert threshold_for(np.array([0.1, 0.2, 0.3, 0.4]), 0.5) == pytest.approx(0.3)


def test_bank_is_capped_reproducibly(data: dict[str, np.ndarray]) -> None:
    a = fit_detector(data["train"], data["val"], max_bank=50, seed=3)
    b = fit_detector(data["train"], data["val"], max_bank=50, seed=3)
    assert len(a.bank) == 50 and np.array_equal(a.bank, b.bank) and a.threshold == b.threshold


def test_bad_arguments_are_usage_errors(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ConfigError, match="unknown_accept"):
        fit_detector(data["train"], data["val"], accept=1.5)
    with pytest.raises(ConfigError, match="at least k=5"):
        fit_detector(data["train"][:3], data["val"], k=5)


def test_save_load_round_trip(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    det = fit_detector(data["train"], data["val"])
    info = det.save(tmp_path)
    info2 = OODInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    back = UnknownDetector.load(tmp_path, info2)
    assert back.threshold == det.threshold
    # float16 storage of the bank moves scores by far less than the gap between in and out
    assert np.abs(back.score(data["out"]) - det.score(data["out"])).max() < 2e-3


def test_a_tampered_file_is_refused(tmp_path: Path, data: dict[str, np.ndarray]) -> None:
    info = fit_detector(data["train"], data["val"]).save(tmp_path)
    raw = bytearray((tmp_path / OOD_FILE).read_bytes())
    raw[-1] ^= 1
    (tmp_path / OOD_FILE).write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="does not match its digest"):
        UnknownDetector.load(tmp_path, info)
    (tmp_path / OOD_FILE).unlink()
    with pytest.raises(ArtifactError, match="cannot read"):
        UnknownDetector.load(tmp_path, info)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"method": "energy"}, "invalid ood method"),
        ({"threshold": float("nan")}, "out of range"),
        ({"k": 0}, "out of range"),
        ({"accept": 0}, "out of range"),
        ({"digest": None, "k": "x"}, "damaged"),
    ],
)
def test_record_entry_is_checked(data: dict[str, np.ndarray], tmp_path: Path, edit: dict[str, object], message: str) -> None:
    raw = fit_detector(data["train"], data["val"]).save(tmp_path).to_dict() | edit
    with pytest.raises(ArtifactError, match=message):
        OODInfo.from_dict(raw)
