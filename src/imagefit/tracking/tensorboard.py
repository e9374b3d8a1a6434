"""TensorBoard event files in the run folder (``tensorboard --logdir runs/`` shows every run).

Written with the ``tensorboard`` package's own event writer
(:class:`~tensorboard.summary.writer.event_file_writer.EventFileWriter`, the
one :class:`torch.utils.tensorboard.SummaryWriter` wraps): per-epoch loss,
accuracy and learning rate under ``<phase>/...`` (``head``, ``backbone``), one
step per epoch across phases; at the end the final validation metrics under
``final/...`` and the confusion matrix and validation-photo grid as images.

Kept cheap for the training: the images are the report's PNG files put into
the image summaries as they are (no decoding and re-encoding), their record
checksums are computed by google-crc32c (:mod:`._crc`), and an epoch costs one
queued record, written by the writer's own thread. On a local disk each record
is appended to the file as soon as that thread takes it, so a TensorBoard
watching a running training sees every finished epoch; on file systems without
appends (``s3://``...) the writer's thread flushes every :data:`FLUSH_SECS`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

from ..train.callbacks import Callback, TrainerLike
from ._metrics import epoch_scalars, scalars

TB_DIR = "tensorboard"
# The validation-photo grid the run report writes (report.write_run_report).
GRID_FILE = "predictions.png"
CONFUSION_FILE = "confusion.png"
FLUSH_SECS = 2.0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> TensorBoard's Summary.Image colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
_COLORSPACE = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def png_header(data: bytes) -> tuple[int, int, int] | None:
    """``(height, width, colorspace)`` from a PNG's IHDR chunk; None if ``data`` is not a PNG."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return height, width, _COLORSPACE.get(data[25], 3)


class TensorBoardLogger(Callback):
    """Writes a run's TensorBoard record under ``log_dir`` (one instance for every phase of a run)."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.step = 0
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The event writer, opened on first use (a run that fails before its first epoch leaves no file)."""
        if self._writer is None:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            from ._crc import install

            install()
            self._writer = EventFileWriter(str(self.log_dir), flush_secs=FLUSH_SECS)
        return self._writer

    def _add(self, step: int, values: list[Any]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """One record holding every scalar of ``values`` at ``step``."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._add(step, [Summary.Value(tag=k, simple_value=v) for k, v in values.items()])

    def add_png(self, tag: str, data: bytes, step: int) -> bool:
        """A PNG file's bytes as an image summary, as they are; False (nothing written) if they are not a PNG."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        header = png_header(data)
        if header is None:
            return False
        height, width, colorspace = header
        image = Summary.Image(height=height, width=width, colorspace=colorspace, encoded_image_string=data)
        self._add(step, [Summary.Value(tag=tag, image=image)])
        return True

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        self.add_scalars(epoch_scalars(getattr(trainer, "phase", ""), logs), self.step)
        self.step += 1

    def log_run_end(self, out: Path, metrics: dict[str, Any]) -> None:
        """Final metrics, confusion matrix and validation-photo grid; closes the writer."""
        self.add_scalars(scalars(metrics, "final/"), self.step)
        # The report's own picture when it was written (rendering another costs a second of matplotlib).
        picture = Path(out) / CONFUSION_FILE
        classes = [str(c) for c in (metrics.get("per_class") or {})]
        matrix = metrics.get("confusion_matrix")
        if not (picture.is_file() and self.add_png("final/confusion_matrix", picture.read_bytes(), self.step)):
            if matrix and len(classes) == len(matrix):
                from ..report.plots import confusion_plot

                self.add_png("final/confusion_matrix", confusion_plot(matrix, classes), self.step)
        grid = Path(out) / GRID_FILE
        if grid.is_file():
            self.add_png("final/validation_photos", grid.read_bytes(), self.step)
        self.close()

    def close(self) -> None:
        """Write what is queued and close the file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))
