"""Issue 5, part 1: property-based fuzzing of the decoder.

Mutated image bytes (bit flips, truncations, insertions of real PNG/JPEG/GIF/
WebP/BMP/TIFF bytes, overwritten headers) go to :func:`imagefit.data.load.decode`.
Only :class:`BadImageError` may escape, and a success is always an RGB image.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imagefit.data import load as load_mod
from imagefit.data.load import decode
from imagefit.errors import BadImageError

from .conftest import bomb_png, png16_rgb

EXAMPLES = 1000
STATS = {"runs": 0, "decoded": 0, "refused": 0}


def _encode(fmt: str, mode: str = "RGB", size: tuple[int, int] = (24, 16), **kw: object) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


SEEDS = [
    _encode("PNG"),
    _encode("PNG", "RGBA"),
    _encode("PNG", "P"),
    _encode("PNG", "L"),
    png16_rgb((200, 10, 10), (12, 8)),
    _encode("JPEG", quality=80),
    _encode("JPEG", "CMYK"),
    _encode("JPEG", progressive=True),
    _encode("GIF", "P"),
    _encode("WEBP", quality=70),
    _encode("WEBP", lossless=True),
    _encode("BMP"),
    _encode("TIFF"),
    _encode("PPM"),
    bomb_png(),
]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.integers(0, len(SEEDS) - 1)),
    st.tuples(st.just("overwrite"), st.integers(0, 64), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
)


def mutate(data: bytes, ops: list[tuple[str, int, int]], insert_bytes: bytes) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << arg
        elif op == "truncate":
            del buf[i:]
        elif op == "insert":
            other = SEEDS[arg]
            j = pos % len(other)
            buf[i:i] = other[j : j + 1 + pos % 200] if not insert_bytes else insert_bytes
        elif op == "overwrite":
            # Headers hold the sizes: overwrite 4 bytes near the start with any value.
            buf[i : i + 4] = arg.to_bytes(4, "big")
        elif op == "delete":
            del buf[i : i + arg]
    return bytes(buf)


@pytest.fixture(autouse=True)
def _small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A mutated header may claim up to MAX_PIXELS pixels; 4M keeps each example fast
    # without changing which code paths run.
    monkeypatch.setattr(load_mod, "MAX_PIXELS", 4_000_000)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    ops=st.lists(mutation, min_size=1, max_size=4),
    raw=st.binary(max_size=32),
    draft=st.sampled_from([None, 8, 64]),
)
def test_decode_only_raises_bad_image_error(seed: int, ops: list[tuple[str, int, int]], raw: bytes, draft: int | None) -> None:
    data = mutate(SEEDS[seed], ops, raw if len(ops) % 2 else b"")
    STATS["runs"] += 1
    try:
        img = decode(data, draft_size=draft)
    except BadImageError as exc:
        STATS["refused"] += 1
        assert str(exc)
        return
    STATS["decoded"] += 1
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size[0] >= 1 and img.size[1] >= 1
    np.asarray(img)  # the pixels are really there


def test_seeds_decode() -> None:
    for data in SEEDS[:-1]:
        assert decode(data).mode == "RGB"
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode(SEEDS[-1])


def test_fuzz_ran(capsys: pytest.CaptureFixture[str]) -> None:
    # Runs after the property test in file order; records how many examples ran.
    if STATS["runs"] == 0:
        pytest.skip("property test not run in this session")
    assert STATS["runs"] >= EXAMPLES * 0.9
    with capsys.disabled():
        print(f"\n[fuzz] decode examples: {STATS['runs']} ({STATS['decoded']} decoded, {STATS['refused']} refused)")


def test_random_bytes_are_refused_quickly() -> None:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for n in (0, 1, 7, 100, 5000):
        with pytest.raises(BadImageError):
            decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    assert time.perf_counter() - start < 5
