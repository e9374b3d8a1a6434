"""Command line: a thin typer layer over the Python API.

Every :class:`~imagefit.errors.ImagefitError` and every usage error becomes one
line on stderr and a non-zero exit (2 for usage, 130 for Ctrl-C).

Each command is one module of this package holding one function that parses
options, calls the library, and prints the result (results on stdout, notes and
errors on stderr, see :mod:`._common`). Start-up matters (``imagefit --help``
must answer at once), so a command module imports only typer, rich and the
standard library at its top; torch, timm, NumPy-heavy code, matplotlib,
onnxruntime and FastAPI are imported inside the function that needs them.

Adding a command (e.g. ``export``):

1. write ``src/imagefit/cli/export.py`` with ``def export(...) -> None`` whose
   parameters are ``Annotated[..., typer.Argument/Option(...)]`` and whose body
   calls a library function;
2. add one line to ``_register`` below: ``app.command()(export.export)``
   (after ``from . import export`` in its import line).

``train``'s options are generated from the config dataclasses (:mod:`._options`):
a new config field gets its flag without touching the CLI.
"""

from __future__ import annotations

import os
import sys

import typer

from ..errors import ImagefitError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, evaluate and use image classifiers by transfer learning.")


def _register() -> None:
    from . import compare, demo, evaluate, export, inspect, interpret, kaggle, lr_find, models, predict, serve, train

    app.command()(train.train)
    app.command()(evaluate.evaluate)
    app.command()(predict.predict)
    app.command("inspect")(inspect.inspect_cmd)
    app.command()(models.models)
    app.command()(demo.demo)
    app.command()(interpret.interpret)
    app.command()(compare.compare)
    app.command("kaggle-prep")(kaggle.kaggle_prep)
    app.command()(kaggle.score)
    app.command()(serve.serve)
    app.command()(export.export)
    app.command("lr-find")(lr_find.lr_find)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning errors into one line and an exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except ImagefitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # typer vendors its own click: match its usage errors and Abort by shape, not class.
        if type(exc).__name__ == "Abort":
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # `imagefit` alone prints the help and raises a usage error with no message: no bare "error:" line.
            message = exc.format_message()
            if message:
                print(f"error: {message}", file=sys.stderr)
            sys.exit(int(exc.exit_code) or 2)
        raise
    sys.exit(0)


def run() -> None:
    """Console entry point (``imagefit``, ``python -m imagefit``): :func:`main`, then a quick exit.

    Finalizing the interpreter after torch, OpenVINO and scikit-learn were
    imported is slow (see BENCHMARKS.md) and does nothing useful here: every
    file is written atomically and closed before a command returns. So once
    output is flushed the process ends with ``os._exit``. Unexpected
    exceptions still take the normal path, with their traceback.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed pipe (``imagefit predict ... | head``): nothing more to say
    os._exit(code)
