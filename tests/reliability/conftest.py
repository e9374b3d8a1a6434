"""Fixtures for the reliability suite: a class-folder dataset salted with every kind of bad file.

``bad_dataset`` builds, under a temporary folder, two colour classes of good
images plus files that must be skipped with a reason (empty, truncated,
random bytes, text, decompression bomb, broken symlink, unreadable) and
odd-but-valid images that must be used (CMYK, 16-bit, palette, alpha,
grayscale, EXIF-rotated, 1x1, 10000x50, a non-UTF-8 file name).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60)}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# A non-UTF-8 file name (bytes 0xff): Python sees it as the surrogate-escaped "\udcff".
NON_UTF8_NAME = os.fsdecode(b"odd-\xff-name.jpg")
NON_UTF8_BAD_NAME = os.fsdecode(b"broken-\xfe-name.jpg")


def noisy(color: tuple[int, int, int], size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.array(color)[None, None, :] + rng.normal(0, 25, (size[1], size[0], 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(noisy(color, size, seed)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_raw(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG built by hand (for 16-bit RGB, or a header that lies about the size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def png16_rgb(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    w, h = size
    px = np.zeros((h, w, 3), ">u2")
    px[...] = np.array(color, np.uint32) * 257
    rows = b"".join(b"\x00" + px[y].tobytes() for y in range(h))
    return png_raw(w, h, 16, 2, rows)


def bomb_png() -> bytes:
    """Header claims 100000 x 100000 pixels; the data is tiny."""
    return png_raw(100_000, 100_000, 8, 2, b"\x00" * 10)


@dataclass
class BadDataset:
    """The generated folder and what every file in it is expected to do."""

    root: Path
    good: list[Path] = field(default_factory=list)  # plain, well-formed images
    odd: list[Path] = field(default_factory=list)  # unusual but valid: must be used
    bad: dict[Path, str] = field(default_factory=dict)  # must be skipped: path -> reason fragment

    @property
    def usable(self) -> list[Path]:
        return self.good + self.odd

    @property
    def all_files(self) -> list[Path]:
        return self.good + self.odd + list(self.bad)


def build_bad_dataset(root: Path, n_good: int = 8) -> BadDataset:
    """Two class folders (red, green) of good images, plus every odd and bad file."""
    ds = BadDataset(root)
    for cls, color in COLORS.items():
        for i in range(n_good):
            p = root / cls / f"{cls}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy(color, (48, 40), seed=i)).save(p)
            ds.good.append(p)
    red, green = root / "red", root / "green"
    rgb = COLORS["red"]

    def odd(path: Path, write) -> None:  # type: ignore[no-untyped-def]
        write(path)
        ds.odd.append(path)

    def bad(path: Path, data: bytes, reason: str) -> None:
        path.write_bytes(data)
        ds.bad[path] = reason

    # --- unusual but valid: every one must be decoded and used -------------------
    odd(
        red / "alpha.png", lambda p: Image.fromarray(np.dstack([noisy(rgb, (40, 40), 1), np.full((40, 40), 128, np.uint8)]), "RGBA").save(p)
    )
    odd(red / "palette.gif", lambda p: Image.fromarray(noisy(rgb, (40, 40), 2)).convert("P", palette=Image.Palette.ADAPTIVE).save(p))
    odd(red / "cmyk.jpg", lambda p: Image.fromarray(noisy(rgb, (40, 40), 3)).convert("CMYK").save(p, "JPEG"))
    odd(red / "gray16.png", lambda p: Image.fromarray((np.linspace(0, 65535, 40 * 40).reshape(40, 40)).astype(np.uint16)).save(p))
    odd(red / "rgb16.png", lambda p: p.write_bytes(png16_rgb(rgb)))
    odd(red / "gray.jpg", lambda p: Image.fromarray(noisy(rgb, (40, 40), 4)).convert("L").save(p))
    odd(red / "tiny_1x1.png", lambda p: Image.new("RGB", (1, 1), rgb).save(p))

    def exif_rotated(p: Path) -> None:
        im = Image.fromarray(noisy(COLORS["green"], (60, 30), 5))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees on display
        im.save(p, "JPEG", exif=exif)

    odd(green / "exif_rotated.jpg", exif_rotated)
    odd(green / "wide_10000x50.png", lambda p: Image.new("RGB", (10000, 50), COLORS["green"]).save(p))
    odd(green / "photo.webp", lambda p: Image.fromarray(noisy(COLORS["green"], (40, 40), 6)).save(p, "WEBP"))
    odd(green / "photo.bmp", lambda p: Image.fromarray(noisy(COLORS["green"], (40, 40), 7)).save(p, "BMP"))
    odd(green / NON_UTF8_NAME, lambda p: p.write_bytes(jpeg_bytes(COLORS["green"], seed=8)))

    # --- bad: each must be skipped and listed with its reason ----------------------
    bad(red / "zero.jpg", b"", "empty")
    full = jpeg_bytes(rgb, (64, 64), seed=9)
    bad(red / "truncated.jpg", full[: len(full) // 2], "truncated")
    bad(red / "random.jpg", np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(), "not an image")
    bad(green / "notes.txt", b"these are my notes, not a photo\n", "not an image")
    bad(green / "text.png", b"hello, I only look like a PNG\n", "not an image")
    bad(green / "bomb.png", bomb_png(), "decompression bomb")
    bad(red / NON_UTF8_BAD_NAME, full[:300], "truncated")
    # Rich markup in names: "[bold]" would vanish from the listing, and the path
    # ".../sub[/]x.jpg" (folder "sub[", file "]x.jpg") would be a markup error.
    bad(green / "[bold]markup.jpg", b"GIF89a broken", "not an image")
    (green / "sub[").mkdir()
    bad(green / "sub[" / "]x.jpg", b"", "empty")
    link = green / "broken_link.jpg"
    link.symlink_to(root / "does-not-exist.jpg")
    ds.bad[link] = "broken symlink"
    if not IS_ROOT:
        locked = red / "locked.jpg"
        locked.write_bytes(jpeg_bytes(rgb, seed=10))
        locked.chmod(0)
        ds.bad[locked] = "permission denied"
    return ds


@pytest.fixture(scope="session")
def bad_dataset(tmp_path_factory: pytest.TempPathFactory) -> BadDataset:
    """The salted dataset, built once per session (do not modify it in tests)."""
    ds = build_bad_dataset(tmp_path_factory.mktemp("bad") / "data")
    yield ds
    for p in ds.bad:
        if not p.is_symlink() and p.exists():
            p.chmod(0o644)  # let pytest clean it up


def color_dataset(root: Path, n: int) -> Path:
    """``n`` small noisy PNGs per class in ``root/<class>/``: a clean two-class dataset."""
    for cls, color in COLORS.items():
        for i in range(n):
            p = root / cls / f"{cls}_{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy(color, (48, 40), seed=i)).save(p)
    return root


def train_tiny(base: Path, n: int) -> Path:
    """A quick simple_cnn linear run (1 epoch, seed 0) on :func:`color_dataset` under ``base``; its folder."""
    import imagefit

    root = color_dataset(base / "data", n)
    return imagefit.train(root, out=base / "run", model="simple_cnn", strategy="linear", epochs=1, seed=0).path


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A small clean two-class dataset."""
    return color_dataset(tmp_path / "tiny", 6)
