"""search() on synthetic features: a fake FeatureSource and a fake clock stand in for backbones and time.

A fake composite (``lite0+lite1``) returns its members' fake features side by side, at the cost of
all its members: as the real one, it is one more backbone to the search.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from imagefit.data.discover import ImageSet
from imagefit.search import runner as search_mod
from imagefit.search.budget import Rates
from imagefit.search.sources import SetFeatures

NOISE = {"lite0": 2.0, "lite1": 1.6, "lite2": 1.2}
VIEW_COST = {"lite0": 0.01, "lite1": 0.015, "lite2": 0.022}  # seconds of the fake clock per computed view
NATIVE = {"lite0": 224, "lite1": 240, "lite2": 260}


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make_source(clock):
    class FakeSource:
        def __init__(self, key, **_):
            self.key = key
            self.members = key.backbone.split("+")
            size = key.img_size or max(NATIVE[m] for m in self.members)
            self.spec = SimpleNamespace(num_features=8 * len(self.members))
            self.pre = SimpleNamespace(input_size=size)
            self.seconds = 0.0
            self.computed_views = 0
            self.cost = sum(VIEW_COST[m] * (size / NATIVE[m]) ** 2 for m in self.members)

        def missing(self, digests, views):
            return len(digests)

        def features(self, images, views, skipped, progress=None):
            centers = np.random.default_rng(7).normal(size=(len(images.classes), 8)) * 1.5
            vals = []
            for p, y in zip(images.paths, images.labels):
                parts = []
                for j, m in enumerate(self.members):  # each member its own noise (seeded by photo and member)
                    rng = np.random.default_rng((int(p.stem), j))
                    noise = NOISE[m] * (0.9 if self.key.img_size else 1.0)
                    parts.append(centers[y][None, :] + noise * rng.normal(size=(len(views), 8)))
                vals.append(np.concatenate(parts, axis=-1))
            spent = len(images) * len(views) * self.cost
            clock.t += spent
            self.seconds += spent
            self.computed_views += len(images) * len(views)
            if progress:
                progress(len(images))
            return SetFeatures(np.arange(len(images)), np.asarray(vals, np.float32), np.asarray(images.labels), tuple(views))

    return FakeSource


def image_set(tmp_path, name, start, n, k=3):
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for i in range(start, start + n):
        p = folder / f"{i}.jpg"
        p.write_bytes(str(i).encode())
        paths.append(p)
    return ImageSet(paths, [i % k for i in range(n)], [f"c{j}" for j in range(k)], str(folder))


@pytest.fixture
def sets(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(search_mod, "FeatureSource", make_source(clock))
    rates = Rates("fake", tmp_path / "rates.json")
    rates.learn_extraction("lite0", 224, 1000, 10.0)  # this fake machine's measured speeds, as a real one keeps them
    rates.learn_fit(1, 1, 1, 1, 1e-9)  # head fits take no fake time
    return image_set(tmp_path, "train", 0, 600), image_set(tmp_path, "val", 5000, 400), clock, rates


def run(sets, budget, **kw):
    train, val, clock, rates = sets
    clock.t = 0.0
    return search_mod.search(train, val, budget, seed=0, backbones=["lite0", "lite1", "lite2"], rates=rates, clock=clock, **kw)


def test_search_spends_a_budget_on_better_backbones(sets):
    res = run(sets, 1000, allow_composite=False)
    board = res.leaderboard
    assert res.source.backbone == "lite2"  # the least noisy features win on validation
    assert res.best.entry.score == min(c.entry.score for c in res.candidates)
    names = [e.name for e in board.entries]
    assert "lite0 orig" in names and "lite2 orig+flip tta" in names
    assert not any("+" in e.sources for e in board.entries)
    assert board.elapsed_s <= board.budget_s * 1.1
    head = res.head()
    assert head.out_features == 3
    assert set(board.to_dict()["columns"]) >= {"val_log_loss", "val_accuracy", "seconds", "status"}


def test_small_budget_skips_by_estimate_and_keeps_lite0(sets):
    res = run(sets, 25)  # lite0 costs 20 fake seconds: nothing else fits
    statuses = {e.name: e.status for e in res.leaderboard.entries}
    assert statuses["lite2"] == "skipped" and statuses["lite1"] == "skipped"
    assert res.source.backbone == "lite0"
    assert "over budget by estimate" in {e.note for e in res.leaderboard.entries if e.status == "skipped"}


def test_same_seed_and_budget_choose_the_same_model(sets):
    a, b = run(sets, 70), run(sets, 70)
    assert a.best.entry.name == b.best.entry.name
    assert [(e.name, e.status, e.score) for e in a.leaderboard.entries] == [(e.name, e.status, e.score) for e in b.leaderboard.entries]
    np.testing.assert_array_equal(a.best.fit.weight, b.best.fit.weight)


def test_the_composite_is_one_more_backbone_and_can_win(sets):
    res = run(sets, 1000)
    board = res.leaderboard
    # After the single backbones, the composite of all of them: extracted and scored like any backbone.
    composite = [e for e in board.entries if e.sources == "lite0+lite1+lite2"]
    assert {e.status for e in composite} == {"ok"} and len(composite) == 4
    first = [e.sources for e in board.entries].index("lite0+lite1+lite2")
    assert {e.sources for e in board.entries[:first]} == {"lite0", "lite1", "lite2"}
    # More information, lower log loss; then the winner's backbone at a higher resolution, as for any backbone.
    assert res.source.backbone == "lite0+lite1+lite2"
    assert board.entries[-1].sources == "lite0+lite1+lite2@320"
    assert res.best.entry.score == min(c.entry.score for c in res.candidates)
    assert res.best.fit.weight.shape[-1] == 24
    assert board.elapsed_s <= board.budget_s * 1.1
    # Planned from its members' rates: at 260 px lite0+lite1+lite2 costs ~1.78x lite2 alone.
    lite2 = next(e for e in board.entries if e.sources == "lite2")
    assert composite[0].estimate_s == pytest.approx(
        lite2.estimate_s * (1.0 * (260 / 224) ** 2 + 1.55 * (260 / 240) ** 2 + 2.2) / 2.2, rel=0.02
    )


def test_a_composite_that_would_not_fit_is_skipped(sets):
    # lite0..lite2 cost 20 + 30 + 44 fake seconds; their composite ~ 107 more: over a 160 s budget.
    res = run(sets, 160)
    entry = next(e for e in res.leaderboard.entries if e.sources == "lite0+lite1+lite2")
    assert entry.status == "skipped" and entry.note == "over budget by estimate"
    assert res.leaderboard.elapsed_s <= 160 * 1.1 and "+" not in res.source.backbone


def _candidate(name, backbone, tta, losses, img_size=None):
    from imagefit.search.leaderboard import Entry
    from imagefit.search.sources import SourceKey

    losses = np.asarray(losses, np.float64)
    entry = Entry(name, "ok", backbone, tta=tta, score=float(losses.mean()))
    return search_mod.Candidate(entry, SourceKey(backbone, img_size), None, np.zeros((len(losses), 2)), losses)


def test_one_standard_error_rule_prefers_the_cheaper_of_indistinguishable_candidates():
    rng = np.random.default_rng(0)
    best = 1.0 + rng.exponential(0.3, 400)
    z = rng.normal(size=400)
    z = (z - z.mean()) / z.std(ddof=1)  # exactly mean 0, standard deviation 1: the paired standard error is 0.01
    costly = _candidate("lite0+lite1+lite2@320 orig tta", "lite0+lite1+lite2", True, best, 320)
    # Slightly worse on average, but by less than the paired differences' standard error.
    close = _candidate("lite2 orig", "lite2", False, best + 0.005 + 0.2 * z)
    far = _candidate("lite0 orig", "lite0", False, best + 0.1)  # cheapest, clearly worse: never chosen
    st = SimpleNamespace(candidates=[far, close, costly], small=False)
    assert search_mod.within_one_se(close.val_losses, best) and not search_mod.within_one_se(far.val_losses, best)
    assert close.entry.score > costly.entry.score
    chosen = search_mod._choose(st)
    assert chosen is close and "within one standard error of lite0+lite1+lite2@320 orig tta" in chosen.entry.note
    assert costly.predict_cost > close.predict_cost > far.predict_cost
    # Sets small enough for k-fold CV choose by the CV score alone.
    assert search_mod._choose(SimpleNamespace(candidates=[far, close, costly], small=True)) is costly
    # With only the best left within reach, it is chosen and carries no note.
    assert search_mod._choose(SimpleNamespace(candidates=[far, costly], small=False)) is costly and costly.entry.note == ""
