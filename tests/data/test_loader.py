"""iter_batches(): path order, skipped files with reasons, orig/flip views; TrainImages + collate_skip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from imagefit.data.load import SkipLog, content_digest, load_image
from imagefit.data.loader import TrainImages, collate_skip, default_workers, iter_batches
from imagefit.data.transforms import Preprocess

PRE = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 0.875)


def _expected(pre: Preprocess, path: Path) -> np.ndarray:
    """What the loader should give for one readable file (uint8 HWC pixels, or float CHW)."""
    img = load_image(path, draft_size=pre.resize_size)
    return pre.pixels(img) if hasattr(pre, "pixels") else pre(img)


def _width_axis(arr: np.ndarray) -> int:
    # uint8 NHWC batches (engine-side normalization) or float NCHW batches.
    return 2 if arr.shape[-1] == 3 else 3


@pytest.fixture
def files(tmp_path: Path, make_img) -> list[Path]:
    out = []
    for i in range(11):
        out.append(make_img(tmp_path / f"img_{i:02d}.png", (20 * i, 100, 250 - 20 * i), size=(40 + i, 30), seed=i))
    return out


def test_batches_in_path_order(files: list[Path]) -> None:
    skipped = SkipLog()
    batches = list(iter_batches(files, PRE, 4, skipped, workers=2))
    assert [b.indices for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert len(skipped) == 0
    for b in batches:
        assert len(b.arrays) == len(b.indices) == len(b.digests)
        for j, i in enumerate(b.indices):
            np.testing.assert_array_equal(b.arrays[j], _expected(PRE, files[i]))
            assert b.digests[j] == content_digest(files[i].read_bytes())


def test_order_kept_with_many_workers_and_small_batches(files: list[Path]) -> None:
    got = [i for b in iter_batches(files, PRE, 1, SkipLog(), workers=8) for i in b.indices]
    assert got == list(range(len(files)))


def test_skipped_files_recorded_with_reason(tmp_path: Path, files: list[Path]) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    missing = tmp_path / "missing.jpg"
    paths = [files[0], empty, files[1], text, missing, files[2]]
    skipped = SkipLog()
    batches = list(iter_batches(paths, PRE, 2, skipped, workers=2))
    assert [b.indices for b in batches] == [[0, 2], [5]]
    reasons = dict(skipped.items)
    assert set(reasons) == {str(empty), str(text), str(missing)}
    assert reasons[str(empty)] == "empty file"
    assert "not an image" in reasons[str(text)]
    assert reasons[str(missing)] == "file not found"


def test_all_unreadable_yields_nothing(tmp_path: Path) -> None:
    bad = []
    for i in range(3):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(b"nope")
        bad.append(p)
    skipped = SkipLog()
    assert list(iter_batches(bad, PRE, 2, skipped)) == []
    assert len(skipped) == 3


def test_views_orig_and_flip(files: list[Path]) -> None:
    views = ("orig", "flip")
    batches = list(iter_batches(files[:5], PRE, 2, SkipLog(), views=views, workers=2))
    assert [b.indices for b in batches] == [[0, 1], [2, 3], [4]]
    for b in batches:
        assert len(b.arrays) == 2 * len(b.indices)  # image-major: img0/orig, img0/flip, img1/orig ...
        axis = _width_axis(b.arrays)
        for j, i in enumerate(b.indices):
            orig, flip = b.arrays[2 * j], b.arrays[2 * j + 1]
            np.testing.assert_array_equal(orig, _expected(PRE, files[i]))
            np.testing.assert_array_equal(flip, np.flip(orig, axis=axis - 1))
            assert not np.array_equal(orig, flip)


def test_flip_only_view(files: list[Path]) -> None:
    (b,) = list(iter_batches(files[:1], PRE, 4, SkipLog(), views=("flip",)))
    axis = _width_axis(b.arrays)
    np.testing.assert_array_equal(b.arrays[0], np.flip(_expected(PRE, files[0]), axis=axis - 1))


def test_keep_filter(files: list[Path]) -> None:
    got = [i for b in iter_batches(files, PRE, 3, SkipLog(), keep=lambda i: i % 3 == 0) for i in b.indices]
    assert got == [0, 3, 6, 9]


def test_empty_input() -> None:
    assert list(iter_batches([], PRE, 4, SkipLog())) == []


def test_default_workers() -> None:
    assert default_workers() >= 2


def test_train_images_and_collate_skip(tmp_path: Path, files: list[Path]) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    paths = [files[0], bad, files[1]]
    ds = TrainImages(paths, [0, 1, 1], PRE.train_transform("none"), PRE.resize_size)
    assert len(ds) == 3
    items = [ds[i] for i in range(3)]
    assert items[1] is None
    x, y, idx = collate_skip(items)  # type: ignore[misc]
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [0, 1] and idx.tolist() == [0, 2]
    assert collate_skip([None, None]) is None


def test_train_images_with_dataloader(files: list[Path]) -> None:
    ds = TrainImages(files[:6], [0, 1] * 3, PRE.train_transform("light"), PRE.resize_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_skip, num_workers=0)
    got = list(loader)
    assert [b[2].tolist() for b in got] == [[0, 1, 2, 3], [4, 5]]
    assert got[0][0].shape == (4, 3, 32, 32)


def test_bounded_map_keeps_order_and_bounds_work_in_flight() -> None:
    import threading
    import time

    from imagefit.data.loader import bounded_map

    started: list[int] = []
    lock = threading.Lock()

    def slow(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.002 * (i % 3))  # finish out of order
        if i == 5:
            raise ValueError("five")
        return i * i

    seen = []
    for i, fut in bounded_map(slow, range(40), 4, 6, "test"):
        assert len(started) <= i + 1 + 6  # never more than `ahead` beyond what was taken
        try:
            seen.append(fut.result())
        except ValueError:
            seen.append(-1)
    assert seen == [-1 if i == 5 else i * i for i in range(40)]


def test_bounded_map_stops_early_without_running_the_rest() -> None:
    from imagefit.data.loader import bounded_map

    ran: list[int] = []
    for i, fut in bounded_map(ran.append, range(1000), 2, 4, "test"):
        fut.result()
        if i == 3:
            break
    assert len(ran) <= 3 + 1 + 4


def test_worker_processes_do_not_rerun_the_script(tmp_path: Path, files: list[Path]) -> None:
    """A script without ``if __name__ == "__main__":`` starts DataLoader workers from worker_context() once.

    Before, every worker re-imported the script (fork server), which started the workers again and crashed.
    """
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "plain_script.py"
    script.write_text(
        textwrap.dedent(f"""
        import torch
        from imagefit.data.loader import TrainImages, collate_skip, worker_context
        from imagefit.data.transforms import Preprocess

        print("SCRIPT RAN", flush=True)
        pre = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 1.0)
        ds = TrainImages({[str(p) for p in files[:6]]!r}, [0, 1, 0, 1, 0, 1], pre.train_transform("light"), None)
        loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skip,
                                             multiprocessing_context=worker_context())
        print("BATCHES", sum(1 for b in loader if b is not None), flush=True)
        """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("SCRIPT RAN") == 1
    assert "BATCHES 2" in proc.stdout
