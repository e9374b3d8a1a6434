"""CRC-32C for TensorBoard's event writer, computed with NumPy instead of a Python loop per byte.

Every record the ``tensorboard`` package writes carries a masked CRC-32C of its
bytes. Without TensorFlow it computes it in pure Python, one loop step per
byte: the report's validation-photo grid (about a megabyte of PNG) costs close
to a second of CPU there, most of what TensorBoard added to a training.
:func:`install` swaps in :func:`masked_crc32c`, which gives the same numbers
(tested against tensorboard's own function, and the event files are read back
with tensorboard's reader, which checks every CRC with its own code).

How: CRC-32C is linear over GF(2). The data is cut into ``k`` equal chunks whose
registers advance together, one NumPy table look-up per byte position; the
chunk values are then chained with the operator "advance the register over
one chunk of zero bytes", itself found by running the 32 unit registers
through the same loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK32 = 0xFFFFFFFF
# Below this size tensorboard's own loop is as fast (scalar records are ~50 bytes).
SMALL = 4096
# Bytes per chunk: NumPy steps (one per byte of a chunk) against Python steps (one per chunk).
CHUNK_ROWS = 256


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> np.uint32(1)) ^ np.uint32(_POLY), table >> np.uint32(1)).astype(np.uint32)
    return table


TABLE = _table()
_TABLE_LIST = [int(v) for v in TABLE]


def _update(crc: int, data: bytes | memoryview) -> int:
    """The register after ``data``, one byte at a time (for the few bytes that do not fill a chunk)."""
    table = _TABLE_LIST
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _advance(chunks: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Registers after running each column of ``chunks`` (``[length, n]`` bytes) from ``start``."""
    reg = start.copy()
    idx = np.empty_like(reg)
    for row in chunks:
        np.bitwise_xor(reg, row, out=idx)
        np.bitwise_and(idx, 0xFF, out=idx)
        np.right_shift(reg, 8, out=reg)
        np.bitwise_xor(reg, TABLE[idx], out=reg)
    return reg


def _byte_tables(columns: np.ndarray) -> list[list[int]]:
    """Four 256-entry tables applying the linear operator whose image of bit ``i`` is ``columns[i]``."""
    byte = np.arange(256)
    tables = []
    for b in range(4):
        bits = ((byte[:, None] >> np.arange(8)) & 1).astype(bool)  # [256, 8]
        cols = columns[8 * b : 8 * b + 8]
        out = np.zeros(256, dtype=np.uint32)
        for i in range(8):
            out ^= np.where(bits[:, i], cols[i], np.uint32(0)).astype(np.uint32)
        tables.append([int(v) for v in out])
    return tables


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (the check value of ``b"123456789"`` is ``0xE3069283``)."""
    n = len(data)
    if n < SMALL:
        return _update(_MASK32, data) ^ _MASK32
    k = max(32, n // CHUNK_ROWS)
    length = n // k
    head = n - k * length
    crc = _update(_MASK32, memoryview(data)[:head])
    # Column j holds chunk j, so each step reads one contiguous row.
    body = np.ascontiguousarray(np.frombuffer(data, dtype=np.uint8, offset=head).reshape(k, length).T)
    chunks = _advance(body, np.zeros(k, dtype=np.uint32))
    # The 32 unit registers over one chunk of zero bytes: the "skip one chunk" operator, bit by bit.
    skip = _advance(np.zeros((length, 1), dtype=np.uint8), np.uint32(1) << np.arange(32, dtype=np.uint32))
    t0, t1, t2, t3 = _byte_tables(skip)
    for c in chunks.tolist():
        crc = t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24] ^ c
    return crc ^ _MASK32


def masked_crc32c(data: bytes) -> int:
    """The masked CRC that TFRecord (TensorBoard's event format) stores after each length and record."""
    x = crc32c(bytes(data))
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & _MASK32


def install() -> bool:
    """Make the ``tensorboard`` package's record writer use :func:`masked_crc32c`; False if its layout changed."""
    try:
        from tensorboard.summary.writer import record_writer
    except ImportError:
        return False
    current: Any = getattr(record_writer, "masked_crc32c", None)
    if current is None:
        return False
    record_writer.masked_crc32c = masked_crc32c  # type: ignore[attr-defined]
    return True
