"""load.py: every photo becomes RGB, or a BadImageError with a short reason."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagefit.data import load as load_mod
from imagefit.data.load import SkipLog, content_digest, decode, decode_array, load_image, probe, read_bytes, to_rgb
from imagefit.errors import BadImageError, ConfigError, DataError

RED = (220, 40, 40)


def _jpeg_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = RED) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    arr = np.clip(np.array(color)[None, None] + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


# -- bad files: each gives a reason --------------------------------------------------
def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.jpg"
    f.write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        load_image(f)


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _jpeg_bytes((200, 150))
    f = tmp_path / "cut.jpg"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated"):
        load_image(f)
    with pytest.raises(BadImageError, match="truncated"):
        load_image(f, draft_size=32)


def test_random_bytes(tmp_path: Path) -> None:
    f = tmp_path / "noise.jpg"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(BadImageError, match="not an image"):
        load_image(f)


def test_text_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.png"
    f.write_text("this is not a picture\n" * 20)
    with pytest.raises(BadImageError, match="not an image"):
        load_image(f)


def test_jpeg_header_only(tmp_path: Path) -> None:
    f = tmp_path / "header.jpg"
    f.write_bytes(_jpeg_bytes()[:40])
    with pytest.raises(BadImageError):
        load_image(f)


def test_missing_directory_and_broken_link(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    d = tmp_path / "dir.jpg"
    d.mkdir()
    with pytest.raises(BadImageError, match="directory"):
        load_image(d)
    link = tmp_path / "link.jpg"
    os.symlink(tmp_path / "gone.jpg", link)
    with pytest.raises(BadImageError, match="broken symlink"):
        load_image(link)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads everything")
def test_permission_denied(tmp_path: Path) -> None:
    f = tmp_path / "secret.jpg"
    f.write_bytes(_jpeg_bytes())
    f.chmod(0)
    try:
        with pytest.raises(BadImageError, match="permission denied"):
            load_image(f)
    finally:
        f.chmod(0o644)


def test_bad_image_error_is_a_data_error() -> None:
    assert issubclass(BadImageError, DataError)


# -- decompression bombs -------------------------------------------------------------
def test_decompression_bomb_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _save(Image.new("RGB", (100, 80), RED), tmp_path / "big.png")
    assert load_image(f).size == (100, 80)
    monkeypatch.setattr(load_mod, "MAX_PIXELS", 100 * 80 - 1)
    with pytest.raises(BadImageError, match=r"too many pixels \(100x80\).*decompression bomb"):
        load_image(f)
    monkeypatch.setattr(load_mod, "MAX_PIXELS", 100 * 80)
    assert load_image(f).size == (100, 80)


def test_pixel_cap_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _save(Image.new("RGB", (100, 80), RED), tmp_path / "big.png")
    monkeypatch.setenv("IMAGEFIT_MAX_PIXELS", str(100 * 80 - 1))
    with pytest.raises(BadImageError, match=r"too many pixels \(100x80\)"):
        load_image(f)
    monkeypatch.setenv("IMAGEFIT_MAX_PIXELS", "8_000")
    assert load_image(f).size == (100, 80)
    for bad in ("many", "0", "-5"):
        monkeypatch.setenv("IMAGEFIT_MAX_PIXELS", bad)
        with pytest.raises(ConfigError, match=f"invalid IMAGEFIT_MAX_PIXELS: received '{bad}'"):
            load_image(f)


def test_decompression_bomb_explicit_limit() -> None:
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, format="PNG")
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode(buf.getvalue(), max_pixels=1000)


def test_bomb_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # A huge declared size must be refused from the header alone, without allocating the pixels.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A 67-byte PNG that claims 30000 x 30000 RGB pixels (2.7 GB decoded).
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    with pytest.raises(BadImageError, match=r"too many pixels \(30000x30000\)"):
        decode(data)  # the default limit (MAX_PIXELS = 100 M)


# -- every mode becomes 8-bit RGB --------------------------------------------------------
def test_rgb_jpeg(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    f.write_bytes(_jpeg_bytes())
    img = load_image(f)
    assert img.mode == "RGB" and img.size == (64, 48)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 150 and g < 100 and b < 100


def test_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 4), np.uint8)
    arr[:, :10] = (255, 0, 0, 255)  # opaque red
    arr[:, 10:] = (0, 0, 255, 0)  # fully transparent blue
    f = _save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")
    out = np.asarray(load_image(f))
    assert out.shape == (10, 20, 3)
    assert (out[:, :10] == (255, 0, 0)).all()
    assert (out[:, 10:] == (255, 255, 255)).all()


def test_la_mode(tmp_path: Path) -> None:
    f = _save(Image.new("LA", (8, 8), (100, 255)), tmp_path / "la.png")
    out = np.asarray(load_image(f))
    assert out.shape == (8, 8, 3) and (out == 100).all()


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (8, 4))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    px = np.zeros((4, 8), np.uint8)
    px[:, 4:] = 1
    p.putdata(px.reshape(-1).tolist())
    plain = _save(p, tmp_path / "p.png")
    out = np.asarray(load_image(plain))
    assert out.shape == (4, 8, 3)
    assert (out[:, :4] == (255, 0, 0)).all() and (out[:, 4:] == (0, 255, 0)).all()
    trans = _save(p, tmp_path / "pt.png", transparency=1)
    out = np.asarray(load_image(trans))
    assert (out[:, :4] == (255, 0, 0)).all() and (out[:, 4:] == (255, 255, 255)).all()
    gif = _save(p, tmp_path / "p.gif")
    assert load_image(gif).mode == "RGB"


def test_cmyk_jpeg(tmp_path: Path) -> None:
    f = _save(Image.new("CMYK", (16, 12), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(f).mode == "CMYK"
    img = load_image(f)
    assert img.mode == "RGB" and img.size == (16, 12)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60  # C=0, M=Y=100%: red


def test_16bit_png(tmp_path: Path) -> None:
    arr = np.zeros((4, 6), np.uint16)
    arr[:, :2] = 65535
    arr[:, 2:4] = 32768
    f = _save(Image.fromarray(arr), tmp_path / "deep.png")
    assert Image.open(f).mode.startswith("I")
    out = np.asarray(load_image(f))
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert (out[:, :2] == 255).all()
    assert (abs(out[:, 2:4].astype(int) - 127) <= 1).all()
    assert (out[:, 4:] == 0).all()


def test_16bit_values_already_8bit_range() -> None:
    img = Image.fromarray(np.full((3, 3), 200, np.uint16))
    assert (np.asarray(to_rgb(img)) == 200).all()


@pytest.mark.parametrize("mode", ["L", "1", "I", "F"])
def test_grayscale_modes(tmp_path: Path, mode: str) -> None:
    img = Image.new("L", (9, 7), 255).convert(mode)
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (9, 7)
    assert (np.asarray(out) == 255).all()


def test_grayscale_file(tmp_path: Path) -> None:
    f = _save(Image.new("L", (9, 7), 77), tmp_path / "g.jpg")
    out = np.asarray(load_image(f))
    assert out.shape == (7, 9, 3)
    assert (abs(out.astype(int) - 77) <= 2).all()


def test_exif_rotation_applied(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, left half red, right half blue; EXIF 6 = rotate 90 degrees clockwise to display.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    f = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(f)
    assert out.size == (20, 40)  # portrait after rotation
    a = np.asarray(out).astype(int)
    top, bottom = a[:18].reshape(-1, 3).mean(0), a[22:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("orientation", [3, 8])
def test_exif_other_orientations(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    f = _save(Image.new("RGB", (40, 20), RED), tmp_path / "o.jpg", exif=exif)
    assert load_image(f).size == ((40, 20) if orientation == 3 else (20, 40))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM"])
def test_formats(tmp_path: Path, fmt: str) -> None:
    f = _save(Image.new("RGB", (12, 10), RED), tmp_path / f"a.{fmt.lower()}", format=fmt)
    img = load_image(f)
    assert img.mode == "RGB" and img.size == (12, 10)


def test_draft_keeps_at_least_draft_size(tmp_path: Path) -> None:
    f = tmp_path / "big.jpg"
    f.write_bytes(_jpeg_bytes((800, 600)))
    img = load_image(f, draft_size=256)
    assert min(img.size) >= 256 and img.size[0] <= 800
    assert img.size[0] * 600 == img.size[1] * 800  # aspect kept


# -- helpers ------------------------------------------------------------------------------
def test_read_bytes_and_digest(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    data = _jpeg_bytes()
    f.write_bytes(data)
    assert read_bytes(f) == data
    d = content_digest(data)
    assert d == content_digest(bytes(data)) and len(d) == 32
    assert d != content_digest(data + b"\0")


def test_probe(tmp_path: Path) -> None:
    f = _save(Image.new("RGB", (31, 17)), tmp_path / "a.png")
    assert probe(f) == (31, 17)


def test_skip_log() -> None:
    log = SkipLog()
    log.add(Path("/a.jpg"), "empty file")
    other = SkipLog()
    other.add("/a.jpg", "empty file")
    other.add("/b.jpg", "not an image (unrecognized format)")
    log.extend(other)
    assert len(log) == 2
    assert log.as_list() == [
        {"path": "/a.jpg", "reason": "empty file"},
        {"path": "/b.jpg", "reason": "not an image (unrecognized format)"},
    ]


# -- the libjpeg-turbo fast path gives Pillow's pixels ---------------------------------
def _pillow_only(data: bytes, draft_size: int | None = None) -> np.ndarray:
    """What decoding gives with the fast path switched off."""
    saved, load_mod._simplejpeg = load_mod._simplejpeg, None
    try:
        return np.asarray(decode(data, draft_size))
    finally:
        load_mod._simplejpeg = saved


def _photo_jpeg(size: tuple[int, int], **save: object) -> bytes:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (max(2, size[1] // 8), max(2, size[0] // 8), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(buf, format="JPEG", **save)
    return buf.getvalue()


def test_fast_path_is_used_for_plain_jpegs() -> None:
    if load_mod._simplejpeg is None:
        pytest.skip("simplejpeg not installed")
    calls = []
    real = load_mod._simplejpeg.decode_jpeg
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(load_mod._simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(1) or real(*a, **k))
        decode_array(_photo_jpeg((64, 48)))
    assert calls == [1]


def test_fast_path_same_pixels_as_pillow_on_sample_photos(sample_data: Path) -> None:
    photos = sorted(sample_data.rglob("*.jpg"))
    assert photos
    for p in photos:
        data = p.read_bytes()
        for draft in (None, 256, 64):
            assert np.array_equal(decode_array(data, draft), _pillow_only(data, draft)), (p.name, draft)


@pytest.mark.parametrize(
    "size,save",
    [
        ((333, 250), {"quality": 90}),
        ((333, 250), {"quality": 75, "progressive": True}),
        ((301, 203), {"quality": 95, "subsampling": 0}),  # 4:4:4
        ((301, 203), {"quality": 80, "subsampling": 1}),  # 4:2:2
        ((1100, 700), {"quality": 85}),  # draft 1/2
        ((2000, 1500), {"quality": 85}),  # draft 1/4
        ((4001, 2100), {"quality": 70}),  # draft 1/8
        ((600, 2600), {"quality": 85}),  # tall
    ],
)
def test_fast_path_same_pixels_as_pillow(size: tuple[int, int], save: dict[str, object]) -> None:
    data = _photo_jpeg(size, **save)
    for draft in (None, 256):
        fast = decode_array(data, draft)
        assert fast.dtype == np.uint8 and fast.flags.c_contiguous and fast.flags.writeable
        assert np.array_equal(fast, _pillow_only(data, draft)), draft


@pytest.mark.parametrize("orientation", range(0, 10))
def test_fast_path_exif_orientations_as_pillow(orientation: int) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:10, :20] = (255, 0, 0)
    arr[10:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif, quality=95)
    data = buf.getvalue()
    fast = decode_array(data)
    assert np.array_equal(fast, _pillow_only(data))
    assert fast.shape[:2] == ((40, 20) if orientation in (5, 6, 7, 8) else (20, 40))


def test_fast_path_grayscale_and_cmyk_as_pillow() -> None:
    gray, cmyk = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)).save(gray, format="JPEG")
    Image.new("CMYK", (30, 20), (10, 200, 30, 5)).save(cmyk, format="JPEG")
    for data in (gray.getvalue(), cmyk.getvalue()):
        fast = decode_array(data)
        assert fast.shape[2] == 3
        assert np.array_equal(fast, _pillow_only(data))


def _assert_as_pillow(data: bytes) -> None:
    """decode_array refuses ``data`` with Pillow's reason, or gives Pillow's pixels."""
    try:
        expected = _pillow_only(data)
    except BadImageError as exc:
        with pytest.raises(BadImageError, match=re.escape(str(exc))):
            decode_array(data)
    else:
        assert np.array_equal(decode_array(data), expected)  # Pillow reads it: so do we


def test_fast_path_refusals_keep_pillows_reasons(tmp_path: Path) -> None:
    data = _jpeg_bytes((200, 150))
    for cut in (data[: len(data) // 2], data[:-2]):
        _assert_as_pillow(cut)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_array(data, max_pixels=100)


def test_fast_path_damaged_exif_decided_by_pillow() -> None:
    data = _jpeg_bytes((40, 30))
    garbage = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03" + b"\xff" * 7
    app1 = b"\xff\xe1" + (len(garbage) + 2).to_bytes(2, "big") + garbage
    _assert_as_pillow(data[:2] + app1 + data[2:])
