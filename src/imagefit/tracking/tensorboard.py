"""TensorBoard event files in the run folder (``tensorboard --logdir runs/`` shows every run).

Written with :class:`torch.utils.tensorboard.SummaryWriter` (the ``tensorboard``
package's event format): per-epoch loss, accuracy and learning rate under
``<phase>/...`` (``head``, ``backbone``), one step per epoch across phases;
at the end the final validation metrics under ``final/...`` and the
confusion matrix and validation-photo grid as images.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..train.callbacks import Callback, TrainerLike
from ._metrics import epoch_scalars, scalars

TB_DIR = "tensorboard"
# The validation-photo grid the run report writes (report.write_run_report).
GRID_FILE = "predictions.png"
CONFUSION_FILE = "confusion.png"


def _png_array(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


class TensorBoardLogger(Callback):
    """Writes a run's TensorBoard record under ``log_dir`` (one instance for every phase of a run).

    The writer is opened on the first epoch and flushed after each, so a
    TensorBoard watching a running training sees every finished epoch.
    """

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.step = 0
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        return self._writer

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, float]) -> None:
        for name, value in epoch_scalars(getattr(trainer, "phase", ""), logs).items():
            self.writer.add_scalar(name, value, self.step)
        self.step += 1
        self.writer.flush()

    def log_run_end(self, out: Path, metrics: dict[str, Any]) -> None:
        """Final metrics, confusion matrix and validation-photo grid; closes the writer."""
        from ..report.plots import confusion_plot

        w = self.writer
        for name, value in scalars(metrics, "final/").items():
            w.add_scalar(name, value, self.step)
        # The report's own picture when it was written (rendering another costs a second of matplotlib).
        picture = Path(out) / CONFUSION_FILE
        classes = [str(c) for c in (metrics.get("per_class") or {})]
        matrix = metrics.get("confusion_matrix")
        if picture.is_file():
            w.add_image("final/confusion_matrix", _png_array(picture.read_bytes()), self.step, dataformats="HWC")
        elif matrix and len(classes) == len(matrix):
            w.add_image("final/confusion_matrix", _png_array(confusion_plot(matrix, classes)), self.step, dataformats="HWC")
        grid = Path(out) / GRID_FILE
        if grid.is_file():
            w.add_image("final/validation_photos", _png_array(grid.read_bytes()), self.step, dataformats="HWC")
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))
