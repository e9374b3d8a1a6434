"""``imagefit serve``: the HTTP server of :mod:`imagefit.serve`.

Its options are generated from :class:`~imagefit.serve.settings.ServeSettings` (defaults,
bounds and help written once), so the CLI, ``create_app`` and worker processes agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ImagefitError
from ..serve.settings import ServeSettings
from ._options import settings_parameters, with_config_options


def serve(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own model copy (1 is best on 2 cores).")] = 1,
    **options: Any,
) -> None:
    """Serve a model over HTTP: a photo page at /, POST /predict, GET /health and /model, API docs at /docs."""
    settings = ServeSettings(str(run), **options)  # bounds checked here: a usage error before FastAPI loads
    try:
        from ..serve.app import serve as run_server
    except ImportError as exc:
        raise ImagefitError(f"serving needs the serve extra: pip install 'imagefit[serve]' ({exc})") from None
    run_server(settings, host=host, port=port, workers=workers)


serve = with_config_options(serve, settings_parameters(ServeSettings, "Server settings", exclude=("run_path",)))
