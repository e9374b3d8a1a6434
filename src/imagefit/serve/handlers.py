"""What the server does for each request, apart from the HTTP wiring (:mod:`imagefit.serve.routes`).

:class:`Server` holds the model, its engine, the micro-batcher and the decode pools
of one app; its methods are the endpoints' bodies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any

import numpy as np
from fastapi import Request

from ..data.loader import default_workers
from ..model import Model
from .batcher import MicroBatcher
from .budget import BIG, NORMAL, Cost, DecodePools
from .limits import ServeError, prepare_image, probe_image
from .schemas import Health, ModelRef, Prediction, PredictResponse
from .settings import ServeSettings
from .upload import read_files


def finite(obj: Any) -> Any:
    """Replace NaN/inf (valid in Python's JSON, not in strict JSON) with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def predictions(
    names: list[str], probs: np.ndarray, classes: list[str], scores: np.ndarray | None = None, threshold: float | None = None
) -> list[Prediction]:
    """One :class:`Prediction` per image from the calibrated probabilities (the one place answers are built).

    ``scores`` are the unknown-photo scores (NaN where not available); with
    ``threshold`` None (a run without a detector) ``unknown`` is null.
    """
    out = []
    for n, (name, row) in enumerate(zip(names, probs)):
        k = int(row.argmax())
        score = None if scores is None or threshold is None or not np.isfinite(scores[n]) else float(scores[n])
        out.append(
            Prediction(
                filename=name,
                label=classes[k],
                probability=float(row[k]),
                probabilities={c: float(row[j]) for j, c in enumerate(classes)},
                unknown=None if score is None or threshold is None else bool(score > threshold),
                unknown_score=score,
            )
        )
    return out


class Server:
    """The state behind one app: model, engine, batcher, decode pools, settings.

    Args:
        settings: The server's settings.
        model: The loaded model; its engine is warmed up here, so no client pays for it.
    """

    def __init__(self, settings: ServeSettings, model: Model):
        self.settings = settings
        self.model = model
        self.pre = model.preprocess
        self.engine = model.engine
        # Read (and its digest checked) at startup: a damaged detector stops the server, not a request.
        self.detector = model.unknown_detector
        # Warm-up: the first engine run allocates its buffers.
        self.engine(np.zeros((1, self.pre.input_size, self.pre.input_size, 3), np.uint8))
        self.batcher = MicroBatcher(
            self._infer, window_ms=settings.batch_window_ms, max_batch=settings.max_batch, max_pending=settings.max_pending
        )
        self.pools = DecodePools(settings, default_workers())
        self.backbone = model.record.backbone.name
        self.model_ref = ModelRef(run=model.path.name, backbone=self.backbone, temperature=model.temperature)
        self.started = time.monotonic()

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """``[n, classes + 1]``: the probabilities, then the unknown-photo score (NaN without a detector)."""
        if self.model.tta:
            # The run was chosen predicting with flip averaging: the photo and its mirror image, averaged.
            n = len(x)
            feats = self.engine(np.concatenate([x, x[:, :, ::-1]])).reshape(2, n, -1).transpose(1, 0, 2)
        else:
            feats = self.engine(x)[:, None, :]
        probs = self.model.head_probs(feats)
        scores = self.model.unknown_scores(feats)
        column = np.full(len(probs), np.nan, np.float32) if scores is None else scores.astype(np.float32)
        return np.concatenate([probs.astype(np.float32), column[:, None]], axis=1)

    def start(self) -> None:
        """Start (again) the decode threads; the batcher starts on the first request."""
        self.pools.start()

    async def aclose(self) -> None:
        """Stop the batcher and the decode threads."""
        await self.batcher.aclose()
        self.pools.shutdown()

    def health(self) -> Health:
        """``GET /health``."""
        s = self.batcher.stats
        return Health(
            status="ok",
            uptime_s=round(time.monotonic() - self.started, 3),
            pending=self.batcher.pending,
            batching=self.batcher.batching,
            model_calls=s.calls,
            images=s.images,
            largest_batch=s.largest,
            model_busy_s=round(s.busy_s, 3),
            decoding_pixels=self.pools.budget.in_flight(),
        )

    def model_info(self) -> dict[str, Any]:
        """``GET /model``: the run record (``imagefit.json``), plus the engine and the limits."""
        rec = self.model.record
        body = {
            "run": self.model.path.name,
            "classes": self.model.classes,
            "backbone": {k: v for k, v in dataclasses.asdict(rec.backbone).items() if v is not None},
            "preprocess": rec.preprocess.to_dict(),
            "temperature": self.model.temperature,
            "tta": self.model.tta,
            "metrics": rec.metrics,
            "train_counts": rec.train_counts,
            "created": rec.created,
            "versions": rec.versions or None,
            "engine": self.engine.kind,
            "limits": self.settings.limits(),
            "batching": {"window_ms": self.settings.batch_window_ms, "max_batch": self.settings.max_batch},
        }
        out: dict[str, Any] = finite(body)
        return out

    async def predict(self, request: Request) -> PredictResponse:
        """``POST /predict``, answered within ``timeout_s`` (else 504)."""
        try:
            return await asyncio.wait_for(self._predict(request), self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise ServeError(504, "timeout", f"the request was not answered within {self.settings.timeout_s:g} s") from None

    async def _predict(self, request: Request) -> PredictResponse:
        files = await read_files(request, self.settings)
        arrays = await self._decode(files)
        out = await self.batcher.submit(np.stack(arrays))
        threshold = None if self.detector is None else self.detector.threshold
        answers = predictions([n for n, _ in files], out[:, :-1], self.model.classes, out[:, -1], threshold)
        return PredictResponse(predictions=answers, model=self.model_ref)

    async def _decode(self, files: list[tuple[str, bytes]]) -> list[np.ndarray]:
        """Check every header, reserve the decode budget, then decode in the bounded pools.

        Nothing is decoded unless the whole request fits its budget; if one image
        fails, the request's decodes that have not started are cancelled.
        """
        s = self.settings
        loop = asyncio.get_running_loop()
        # Headers are cheap to read, but a request may carry many: off the event loop.
        sizes = await loop.run_in_executor(None, lambda: [probe_image(d, n, self.pre, s.max_pixels)[2] for n, d in files])
        costs = [Cost(px, BIG if px > s.big_image_pixels else NORMAL) for px in sizes]
        self.pools.budget.admit(costs)
        futures = [self.pools.submit(c, prepare_image, data, name, self.pre, s.max_pixels) for c, (name, data) in zip(costs, files)]
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        finally:
            for f in futures:
                f.cancel()  # no-op for finished ones; releases the budget of queued ones


__all__ = ["Server", "finite", "predictions"]
