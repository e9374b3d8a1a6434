"""Budget parsing and cost estimates."""

import pytest

from imagefit.errors import ConfigError
from imagefit.search.budget import Rates, parse_budget, relative_cost
from imagefit.search.leaderboard import Entry, Leaderboard


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1.5h", 5400), ("600", 600), (45, 45), (" 2 min ", 120)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0", "5d", True])
def test_parse_budget_rejects(text):
    with pytest.raises(ConfigError, match="budget"):
        parse_budget(text)


def test_relative_costs_grow_with_size_and_backbone():
    assert relative_cost("lite0", 224) == 1.0
    assert relative_cost("lite0", None) == 1.0
    assert relative_cost("lite2", 260) > relative_cost("lite1", 240) > 1.0
    assert relative_cost("lite2", 312) == pytest.approx(relative_cost("lite2", 260) * (312 / 260) ** 2)
    assert relative_cost("some_vit", 448) == pytest.approx(4 * relative_cost("some_vit", 224))


def test_rates_measured_once_and_persisted(tmp_path):
    path = tmp_path / "rates.json"
    r = Rates("onnx", path)
    assert not r.measured
    r.learn_extraction("lite2", 260, 1000, 22.0)  # 22 ms per lite2 view = 10 ms per lite0 view
    assert r.extraction("lite0", 224, 100) == pytest.approx(1.0)
    r.learn_extraction("lite0", 224, 1000, 15.0)  # later measurements within 2x do not move the plan
    assert r.extraction("lite0", 224, 100) == pytest.approx(1.0)
    r.learn_extraction("lite0", 224, 1000, 99.0)  # one 10x off says the kept figure is wrong (another machine, a bad count)
    assert r.extraction("lite0", 224, 100) == pytest.approx(9.9)
    assert Rates("onnx", path).extraction("lite0", 224, 100) == pytest.approx(9.9)
    r.learn_extraction("lite0", 224, 1000, 10.0)
    r.learn_fit(100, 10, 2, 5, 1.0)
    again = Rates("onnx", path)
    assert again.measured == {"view_seconds", "fit_constant_multiclass"}
    assert again.head_fit(100, 10, 2, 5) == pytest.approx(1.0)
    # A binary head's constant is its own (a one-logit fit's time said little about a 10-class one).
    assert again.head_fit(100, 10, 1, 5) != pytest.approx(0.5)
    again.learn_fit(100, 10, 1, 5, 2.0)
    assert Rates("onnx", path).head_fit(100, 10, 1, 5) == pytest.approx(2.0)
    assert Rates("torch", path).measured == set()  # another engine, another figure


def test_leaderboard_csv_and_dict(tmp_path):
    b = Leaderboard(60.0, 0, "validation log loss")
    b.add(Entry("b", "ok", "lite0", score=0.3, seconds=2.0))
    b.add(Entry("a", "ok", "lite0", score=0.2, seconds=5.0))
    b.add(Entry("c", "skipped", "lite2", note="over budget by estimate"))
    b.elapsed_s = 66.0
    d = b.to_dict()
    assert [r["name"] for r in d["rows"]] == ["a", "b", "c"]
    assert d["rows"][0]["rank"] == 1 and d["rows"][2]["score"] is None
    assert d["overrun"] == pytest.approx(0.1)
    text = b.write_csv(tmp_path / "leaderboard.csv").read_text()
    assert text.splitlines()[0].startswith("rank,name,status")
    assert text.splitlines()[1].startswith("1,a,ok")
