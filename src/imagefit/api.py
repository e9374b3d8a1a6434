"""The public Python API: ``train``, ``load``. The CLI is a thin layer over these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig

if TYPE_CHECKING:  # torch loads when training or loading starts, not on `import imagefit`
    from .model import Model
    from .train.session import Run


def train(
    data: str | Path,
    val: str | Path | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool | None = None,
    engine: str = "auto",
    device: str = "auto",
    **options: Any,
) -> Run:
    """Train a classifier on a folder (or CSV) of labeled photos.

    Args:
        data: Class folders, ``train/``+``val/`` folders, ``cat.0.jpg``-style
            names, or a CSV with path and label columns.
        val: Optional separate validation data (else the layout's own
            validation folder, else a stratified ``val_split``).
        out: Run folder (default ``runs/<model>-<strategy>-<time>``).
        resume: Continue an interrupted run in ``out`` from its checkpoint.
        progress: Show progress bars and the epoch table; None (default): when
            stderr is a terminal or this runs in Jupyter; False: silent.
        engine: Inference engine for frozen backbones: ``auto``, ``onnx``, ``torch``.
        device: ``auto``, ``cpu`` or ``cuda``.
        **options: Any field of :class:`~imagefit.config.DataConfig`,
            :class:`~imagefit.config.ModelConfig` (``model=`` is the backbone
            name) or :class:`~imagefit.config.TrainConfig`, e.g.
            ``model="lite0", strategy="finetune", epochs=3, lr=1e-4, seed=1``.

    Returns:
        A :class:`~imagefit.train.session.Run`; ``Run.path`` is the run folder.

    Raises:
        ImagefitError: bad options or data, unwritable output, unknown model.
    """
    from .train.run import fit

    config = RunConfig.from_options(**options)
    if progress is None:
        from .ui import auto_progress

        progress = auto_progress()
    return fit(data, val, out, config, resume=resume, progress=progress, engine=engine, device=device)


def load(path: str | Path) -> Model:
    """Load a trained model from its run folder (safetensors + JSON; never unpickles)."""
    from .model import Model

    return Model.load(path)
