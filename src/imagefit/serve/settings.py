"""Every setting of the prediction server, with its default, bounds and help written once.

:class:`ServeSettings` is the one place the server's defaults live: ``create_app``,
``app_from_env`` (worker processes), ``imagefit serve`` and the docs read them from
here. It is a plain dataclass (no FastAPI import), so the CLI can build its options
from it without the ``serve`` extra installed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import invalid

# Bounds are (low, high), both inclusive; None means unbounded on that side.
_Bounds = tuple[float | None, float | None]


def _num(x: float | None) -> str:
    return f"{int(x):,}" if x is not None and float(x).is_integer() else f"{x:g}"


def _setting(default: Any, help: str, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "bounds": (low, high)})


@dataclass(frozen=True)
class ServeSettings:
    """Settings of one server (JSON-serializable, for worker processes).

    Every field is documented in its ``help`` (``ServeSettings.help(name)``), which
    is also the CLI option's help text; bounds are checked on construction, so a bad
    value fails at start-up with a ``ConfigError`` rather than on the first request.
    """

    run_path: str = _setting("", "Run folder (model.safetensors + imagefit.json).")
    max_upload_mb: float = _setting(20.0, "Largest request body in MiB (413 too_large).", 0.001, 4096)
    max_pixels: int = _setting(
        64_000_000,
        "Largest image in pixels, width x height, read from the header before decoding (413 too_many_pixels). "
        "Raise it to accept larger photos (a 12000x12000 scan is 144,000,000).",
        1,
        2_000_000_000,
    )
    max_files: int = _setting(32, "Most images per request (413 too_many_files).", 1, 10_000)
    max_request_pixels: int = _setting(
        128_000_000,
        "Decode budget of one request: the sum of the pixels its images decode to, from their headers "
        "(JPEGs count at their reduced decode size) (413 request_too_many_pixels).",
        1,
        10_000_000_000,
    )
    max_inflight_pixels: int = _setting(
        # Big images decode one at a time: 256 MP is 4 images at the default max_pixels, a queue
        # that drains well within timeout_s (see the flood section of BENCHMARKS.md).
        256_000_000,
        "Decode budget of the whole server: pixels admitted and not yet decoded, across requests (per pool); "
        "a request that would exceed it is refused before decoding (503 busy, Retry-After).",
        1,
        100_000_000_000,
    )
    big_image_pixels: int = _setting(
        4_000_000,
        "Images decoding to more pixels than this go to a separate pool of big_decode_workers threads, "
        "so a flood of huge images never delays a normal photo.",
        1,
        2_000_000_000,
    )
    big_decode_workers: int = _setting(1, "Threads decoding big images (each holds one big image in memory).", 1, 64)
    decode_workers: int = _setting(0, "Threads decoding normal images (0: one per core, at most 8).", 0, 64)
    batch_window_ms: float = _setting(5.0, "Micro-batching wait window in ms (0: no batching).", 0, 1000)
    max_batch: int = _setting(
        4, "Most images per model call (4 is fastest on 2 cores; more cores gain from more; see BENCHMARKS.md).", 1, 4096
    )
    timeout_s: float = _setting(30.0, "Longest time to answer a request (504 timeout).", 0.001, 3600)
    max_pending: int = _setting(512, "Most decoded images waiting for the model before 503 busy (at least max_files).", 1, 1_000_000)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            low, high = f.metadata["bounds"]
            if low is None and high is None:
                continue
            value = getattr(self, f.name)
            kind = "an integer" if f.type in ("int", int) else "a number"
            ok_type = isinstance(value, int) if kind == "an integer" else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not (low <= value <= high):
                raise invalid(f.name, value, f"{kind} from {_num(low)} to {_num(high)}")
        if self.max_pending < self.max_files:
            raise invalid("max_pending", self.max_pending, f"at least max_files ({self.max_files})")
        if self.max_request_pixels > self.max_inflight_pixels:
            # A request over the server's whole budget could never be admitted: say so at start-up.
            raise invalid("max_request_pixels", self.max_request_pixels, f"at most max_inflight_pixels ({self.max_inflight_pixels:,})")

    @property
    def max_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of setting ``name`` (for CLI options)."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of setting ``name`` (for CLI options and docs)."""
        return str(cls.__dataclass_fields__[name].metadata["help"])

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def limits(self) -> dict[str, Any]:
        """The request limits, as shown by ``GET /model``."""
        skip = {"run_path", "batch_window_ms", "max_batch", "decode_workers", "big_decode_workers"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def to_json(self) -> str:
        """JSON form (travels to worker processes in an environment variable)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> ServeSettings:
        """Inverse of :meth:`to_json`; unknown keys are a ``ConfigError``."""
        data = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise invalid("serve setting", unknown[0], ", ".join(sorted(known)))
        return cls(**data)


__all__ = ["ServeSettings"]
