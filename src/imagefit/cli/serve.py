"""``imagefit serve``: the HTTP server of :mod:`imagefit.serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ImagefitError


def serve(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own model copy (1 is best on 2 cores).")] = 1,
    batch_window_ms: Annotated[float, typer.Option(help="Micro-batching wait window in ms (0: no batching).")] = 5.0,
    max_batch: Annotated[
        int, typer.Option(help="Most images per model call (4 is fastest on 2 cores; more cores gain from more; see BENCHMARKS.md).")
    ] = 4,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413).")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image in pixels, width x height (413).")] = 64_000_000,
    max_files: Annotated[int, typer.Option(help="Most images per request (413).")] = 32,
    timeout_s: Annotated[float, typer.Option(help="Longest time to answer a request (504).")] = 30.0,
) -> None:
    """Serve a model over HTTP: a photo page at /, POST /predict, GET /health and /model, API docs at /docs."""
    try:
        from ..serve.app import ServeSettings
        from ..serve.app import serve as run_server
    except ImportError as exc:
        raise ImagefitError(f"serving needs the serve extra: pip install 'imagefit[serve]' ({exc})") from None

    settings = ServeSettings(
        str(run),
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        max_files=max_files,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        timeout_s=timeout_s,
    )
    run_server(settings, host=host, port=port, workers=workers)
