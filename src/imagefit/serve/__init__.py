"""Serve a trained model over HTTP: ``imagefit serve RUN`` or :func:`create_app`.

See :mod:`imagefit.serve.app` for the endpoints and the request limits, and
:mod:`imagefit.serve.batcher` for micro-batching. Needs the ``serve`` extra
(``pip install 'imagefit[serve]'``: FastAPI, uvicorn, python-multipart).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on use, so `import imagefit.serve.batcher` works without FastAPI.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
