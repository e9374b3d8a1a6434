"""The report's unknown-photo section: the validation scores against the threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagefit.report.html import Figures, unknown_section
from imagefit.report.plots import unknown_plot


def test_unknown_plot_is_a_png() -> None:
    rng = np.random.default_rng(0)
    png = unknown_plot(rng.uniform(0.1, 0.3, 50), 0.28, {"clothing": rng.uniform(0.3, 0.6, 80)})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_report_shows_the_scores(trained_run: Path) -> None:
    html = (trained_run / "report.html").read_text()
    assert "<h2>Unknown photos</h2>" in html and "not a cats/dogs photo?" in html
    assert (trained_run / "unknown.png").is_file()


def test_no_section_without_a_detector(tmp_path: Path) -> None:
    assert unknown_section(Figures(tmp_path), tmp_path, None, ["a", "b"]) == []


def test_evaluation_report_adds_the_evaluated_photos(trained_run: Path, sample_data: Path, tmp_path: Path) -> None:
    from imagefit.evaluation import evaluate_run

    res = evaluate_run(trained_run, sample_data / "val", out=tmp_path / "eval.json")
    html = res.report.read_text()
    assert "<h2>Unknown photos</h2>" in html and (res.report.parent / "unknown.png").is_file()
    assert 0.0 <= res.metrics["unknown_share"] <= 0.5
