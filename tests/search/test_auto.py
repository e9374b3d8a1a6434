"""``--model auto``: lite0 first; a stronger backbone only where lite0 leaves room, kept only when clearly better."""

from pathlib import Path

import numpy as np
import pytest

from imagefit.search import auto
from imagefit.search.leaderboard import Entry, Leaderboard
from imagefit.search.runner import Candidate, SearchResult
from imagefit.search.sources import SourceKey


def logits_for(labels: np.ndarray, right: np.ndarray, margin: float = 2.0) -> np.ndarray:
    """Three-class logits that put ``margin`` on the true class where ``right``, else on the next class."""
    z = np.zeros((len(labels), 3))
    target = np.where(right, labels, (labels + 1) % 3)
    z[np.arange(len(labels)), target] = margin
    return z


@pytest.fixture
def fake_search(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """search() replaced by one returning a composite candidate with the given per-photo losses."""
    calls: list[dict] = []
    state: dict = {}

    def fake(train_set, val_set, budget, seed, **kw):  # type: ignore[no-untyped-def]
        calls.append({"budget": budget, **kw})
        losses = state["losses"]
        entry = Entry("lite0+lite1+lite2 orig", "ok", "lite0+lite1+lite2", score=float(losses.mean()), val_log_loss=float(losses.mean()))
        best = Candidate(entry, SourceKey("lite0+lite1+lite2"), None, np.zeros((len(losses), 3)), losses)  # type: ignore[arg-type]
        board = Leaderboard(0.0, seed, "validation log loss, one-standard-error rule", [entry])
        return SearchResult(board, best, [best])

    monkeypatch.setattr(auto, "search", fake)
    monkeypatch.setattr(auto, "stronger_backbone", lambda: "lite0+lite1+lite2")
    return calls, state


def test_a_first_model_right_on_98_percent_stays_and_tries_nothing(fake_search) -> None:  # type: ignore[no-untyped-def]
    calls, _ = fake_search
    y = np.arange(200) % 3
    right = np.arange(200) >= 4  # 98% right
    keep, result = auto.try_stronger([], [], logits_for(y, right), y, say=lambda _: None)  # type: ignore[arg-type]
    assert (keep, result, calls) == (False, None, [])


def test_a_clearly_better_stronger_backbone_is_kept_and_both_are_on_the_leaderboard(fake_search) -> None:  # type: ignore[no-untyped-def]
    calls, state = fake_search
    y = np.arange(300) % 3
    first = logits_for(y, np.arange(300) % 10 != 0)  # 90% right
    state["losses"] = auto.per_photo_losses(first, y) * 0.6  # every photo better: far beyond one standard error
    lines: list[str] = []
    keep, result = auto.try_stronger([], [], first, y, views=("orig",), say=lines.append)  # type: ignore[arg-type]
    assert keep and result is not None
    # Original views only, no TTA, no higher resolution: the default stays a fast head on cached features.
    assert calls[0]["views"] == ("orig",) and calls[0]["higher_res"] is False and calls[0]["allow_composite"] is False
    names = [e.name for e in result.leaderboard.entries]
    assert names == ["lite0+lite1+lite2 orig", "lite0 (default head)"]
    assert result.leaderboard.best == "lite0+lite1+lite2 orig"
    assert "gets 90.0% of validation photos right (under 98%)" in lines[0] and "keeping lite0+lite1+lite2 orig" in lines[-1]


def test_a_stronger_backbone_within_one_standard_error_is_not_worth_its_cost(fake_search) -> None:  # type: ignore[no-untyped-def]
    _, state = fake_search
    y = np.arange(300) % 3
    first = logits_for(y, np.arange(300) % 10 != 0)
    losses = auto.per_photo_losses(first, y)
    rng = np.random.default_rng(0)
    state["losses"] = losses + rng.normal(0, 0.5, len(losses)) - 0.001  # lower on average, by far less than the noise
    keep, result = auto.try_stronger([], [], first, y, say=lambda _: None)  # type: ignore[arg-type]
    assert result is not None and state["losses"].mean() < losses.mean()
    assert not keep and result.leaderboard.best == "lite0 (default head)"


def test_without_lite1_and_lite2_the_run_stays_lite0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "stronger_backbone", lambda: None)
    y = np.arange(100) % 3
    lines: list[str] = []
    keep, result = auto.try_stronger([], [], logits_for(y, np.arange(100) % 2 == 0), y, say=lines.append)  # type: ignore[arg-type]
    assert (keep, result) == (False, None) and "not installed" in lines[0]


def test_two_class_logits_are_one_sigmoid_logit() -> None:
    y = np.array([0, 1, 1])
    losses = auto.per_photo_losses(np.array([[-2.0], [2.0], [0.0]]), y)
    np.testing.assert_allclose(losses, [np.log1p(np.exp(-2.0)), np.log1p(np.exp(-2.0)), np.log(2.0)], rtol=1e-9)


def test_default_run_keeps_the_stronger_backbone_as_a_whole_model(tmp_path: Path, image_folder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through imagefit.train with no --model: the kept composite is saved, loads, predicts, has its unknown-photo detector.

    lite0+simple_cnn stands in for lite0+lite1+lite2 (cheap); ``ENOUGH`` above 1 makes any first model leave room, and
    the decision is forced to "keep" so that the saving path runs whatever tiny photos score.
    """
    import imagefit

    real = auto.try_stronger

    def always_keep(*args, **kwargs):  # type: ignore[no-untyped-def]
        _, result = real(*args, **kwargs)
        return result is not None, result

    monkeypatch.setattr(auto, "ENOUGH", 1.01)
    monkeypatch.setattr(auto, "stronger_backbone", lambda: "lite0+simple_cnn")
    monkeypatch.setattr(auto, "try_stronger", always_keep)
    data = image_folder(8)
    val = image_folder(4, classes=("red", "green"), root=tmp_path / "val")
    run = imagefit.train(data, val=val, out=tmp_path / "run", epochs=3, progress=False, seed=0)
    model = imagefit.load(run.path)
    record = model.record
    assert record.config.model.name == "lite0+simple_cnn" and record.backbone.name == "lite0+simple_cnn"
    assert record.ood is not None and (run.path / "leaderboard.csv").is_file()
    assert {r["sources"] for r in record.extra["search"]["rows"]} == {"lite0", "lite0+simple_cnn"}
    preds = model.predict(sorted(data.rglob("*.png"))[:3])
    assert len(preds) == 3
    # Every candidate in the run's report and in `imagefit compare` (terminal and its report), the chosen one marked.
    report = (run.path / "report.html").read_text()
    assert "Search leaderboard" in report and "* lite0+simple_cnn orig" in report and "lite0 (default head)" in report
    from rich.console import Console

    from imagefit.report.compare import compare, leaderboard_table, write_compare_report

    rows = compare([run.path])
    console = Console(record=True, width=200)
    console.print(leaderboard_table(rows[0]["search"], rows[0]["name"]))
    text = console.export_text()
    assert "chosen (*): lite0+simple_cnn orig" in text and "lite0 (default head)" in text
    assert "Search leaderboard: run" in write_compare_report(rows, tmp_path / "cmp").read_text()
    # The saved backbone is the module the head was fitted on (simple_cnn's filters are random: a rebuilt one is not).
    metrics = model.evaluate(val)
    assert metrics["log_loss"] == pytest.approx(run.metrics["log_loss"], rel=1e-2, abs=1e-4)


def test_a_named_model_never_escalates(tmp_path: Path, image_folder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import imagefit

    monkeypatch.setattr(auto, "ENOUGH", 1.01)
    monkeypatch.setattr(auto, "try_stronger", lambda *a, **k: pytest.fail("a named --model must not try another backbone"))
    data = image_folder(6)
    run = imagefit.train(data, out=tmp_path / "run", model="lite0", epochs=2, val_split=0.25, progress=False)
    record = imagefit.load(run.path).record
    assert record.config.model.name == "lite0" and "search" not in record.extra


def test_a_stronger_backbone_that_cannot_be_used_leaves_the_lite0_run_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagefit.errors import ConfigError

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConfigError("the search produced no scored candidate")

    monkeypatch.setattr(auto, "search", broken)
    monkeypatch.setattr(auto, "stronger_backbone", lambda: "lite0+lite1+lite2")
    y = np.arange(100) % 3
    warnings: list[str] = []
    keep, result = auto.try_stronger([], [], logits_for(y, np.arange(100) % 2 == 0), y, say=lambda _: None, warn=warnings.append)  # type: ignore[arg-type]
    assert (keep, result) == (False, None)
    assert warnings == ["auto: lite0+lite1+lite2 could not be used (the search produced no scored candidate); the run stays lite0"]
