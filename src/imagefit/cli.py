"""Command line: a thin typer layer over the Python API.

Every :class:`~imagefit.errors.ImagefitError` and every usage error becomes one
line on stderr and a non-zero exit (2 for usage, 130 for Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .errors import ImagefitError
from .ui import console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, evaluate and use image classifiers by transfer learning.")


class Strategy(str, Enum):
    linear = "linear"
    finetune = "finetune"
    full = "full"


class Augment(str, Enum):
    none = "none"
    light = "light"
    heavy = "heavy"


class Optim(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


def _out(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2))


@app.command()
def train(
    # Optional so that `imagefit train --resume --out RUN` works: a resumed run reads its data from RUN.
    data: Annotated[Optional[Path], typer.Argument(help="Class folders, train/+val/ folders, cat.0.jpg-style names, or a CSV (not needed with --resume).")] = None,
    val: Annotated[Optional[Path], typer.Option(help="Separate validation data.")] = None,
    val_split: Annotated[Optional[float], typer.Option(help="Validation share when there is no validation data (default 0.2).")] = None,
    model: Annotated[str, typer.Option(help="Backbone (see `imagefit models`).")] = "lite0",
    strategy: Annotated[Strategy, typer.Option(help="linear: frozen backbone, cached features; finetune: + last blocks; full: everything.")] = Strategy.linear,
    img_size: Annotated[Optional[int], typer.Option(help="Input size (default: the backbone's).")] = None,
    augment: Annotated[Augment, typer.Option(help="none, light (flip) or heavy (rotate/zoom/shift/shear/flip).")] = Augment.none,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs of the main phase (default by strategy).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Mini-batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default by strategy).")] = None,
    optimizer: Annotated[Optim, typer.Option(help="Optimizer.")] = Optim.adam,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 0.0,
    unfreeze: Annotated[float, typer.Option(help="finetune: fraction (<1) or number (>=1) of last backbone blocks to train.")] = 0.25,
    hidden: Annotated[int, typer.Option(help="Hidden dense layer width in the head (0: none).")] = 0,
    dropout: Annotated[float, typer.Option(help="Head dropout.")] = 0.2,
    class_weights: Annotated[bool, typer.Option("--class-weights", help="Weight the loss by inverse class frequency.")] = False,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename", help="Read labels from names like cat.0.jpg.")] = False,
    pretrained: Annotated[bool, typer.Option("--pretrained/--no-pretrained", help="Start from pretrained weights.")] = True,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<model>-<strategy>-<time>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    workers: Annotated[int, typer.Option(help="Decoding workers (0: automatic).")] = 0,
) -> None:
    """Train a classifier; writes model.safetensors, imagefit.json and history.csv to a run folder."""
    import imagefit

    from .errors import ConfigError

    if data is None and not resume:
        raise ConfigError("missing argument DATA (only `train --resume --out RUN` may leave it out)")
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN, the folder of the run to continue")
    run = imagefit.train(
        data, val=val, out=out, resume=resume, progress=True,
        val_split=val_split, model=model, strategy=strategy.value, img_size=img_size, augment=augment.value,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.value, weight_decay=weight_decay,
        unfreeze=unfreeze, hidden=hidden, dropout=dropout, class_weights=class_weights, patience=patience,
        seed=seed, labels_from_filename=labels_from_filename, pretrained=pretrained, workers=workers,
    )
    from .evaluate import summary_line

    console.print(f"validation: {summary_line(run.metrics)}")
    console.print(f"run folder: {run.path}  ({run.seconds:.1f} s)")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[Path, typer.Argument(help="Labeled data (any layout).")],
    tta: Annotated[bool, typer.Option("--tta", help="Average with the mirror image.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Metrics JSON (default RUN/eval-<time>.json).")] = None,
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
) -> None:
    """Evaluate a trained model on labeled data; prints and saves the metrics as JSON."""
    import imagefit

    from .evaluate import summary_line
    from .paths import atomic_write_json

    model = imagefit.load(run)
    metrics = model.evaluate(data, tta=tta, progress=True, labels_from_filename=labels_from_filename)
    path = out or (run / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write_json(path, metrics)
    console.print(summary_line(metrics))
    _print_skipped(metrics["skipped"])
    console.print(f"metrics: {path}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (recursive).")],
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("predictions.csv"),
    tta: Annotated[bool, typer.Option("--tta", help="Average with the mirror image.")] = False,
) -> None:
    """Predict images; writes path, label and one probability column per class."""
    import imagefit

    model = imagefit.load(run)
    preds = model.predict(paths, tta=tta, progress=True)
    preds.to_csv(out)
    _print_skipped(preds.skipped.as_list())
    console.print(f"{len(preds)} predictions -> {out}")


@app.command("inspect")
def inspect_cmd(
    data: Annotated[Path, typer.Argument(help="Data folder or CSV.")],
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Class counts, imbalance ratio, unreadable files and image size range."""
    from .inspect import inspect_data

    rep = inspect_data(data, labels_from_filename=labels_from_filename)
    if as_json:
        _out(rep)
        return
    console.print(f"{rep['data']}: layout '{rep['layout']}', classes {rep['classes']}")
    for name, s in rep["splits"].items():
        size = s.get("size")
        size_text = f", sizes {size['min'][0]}x{size['min'][1]} .. {size['max'][0]}x{size['max'][1]}" if size else ""
        ratio = f", imbalance {s['imbalance_ratio']:.2f}" if s["imbalance_ratio"] else ""
        console.print(f"  {name}: {s['n_readable']}/{s['n_files']} readable, counts {s['counts']}{ratio}{size_text}")
        _print_skipped(s["unreadable"], indent="    ")


@app.command()
def models() -> None:
    """Every registered backbone, its input size, and whether its weights are available offline."""
    from .models import list_backbones, weights_available

    table = Table("name", "input", "features", "weights", "offline")
    for spec in list_backbones():
        scratch = spec.weights.startswith("none")
        table.add_row(spec.name, str(spec.input_size), str(spec.num_features), spec.weights, "n/a (scratch)" if scratch else ("yes" if weights_available(spec.name) else "no"))
    console.print(table)
    console.print("Any timm model name also works (weights from the local Hugging Face cache, or --no-pretrained).")


@app.command()
def demo(
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/demo-<time>).")] = None,
) -> None:
    """Train, evaluate and predict on the bundled sample of cats and dogs."""
    import imagefit

    from .evaluate import summary_line

    sample = Path(__file__).parent / "sample_data"
    out = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    console.print(f"[bold]imagefit demo[/]: training lite0 (linear) on {sample} (see its README for provenance)")
    run = imagefit.train(sample / "train", val=sample / "val", out=out, progress=True, seed=0)
    model = imagefit.load(run.path)
    metrics = model.evaluate(sample / "val")
    preds = model.predict([sample / "val"])
    csv_path = preds.to_csv(run.path / "predictions.csv")
    console.print(f"validation: {summary_line(metrics)}")
    for r in preds.records[:3]:
        console.print(f"  {Path(r['path']).name}: {r['label']} ({r['probability']:.3f})")
    console.print(f"written: {run.path}/ model.safetensors, imagefit.json, history.csv, metrics.json; predictions {csv_path}")


def _print_skipped(items: list[dict[str, str]], indent: str = "") -> None:
    if items:
        console.print(f"{indent}[yellow]skipped {len(items)} unreadable file(s):[/]")
        for it in items:
            console.print(f"{indent}  {it['path']}: {it['reason']}")


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
            print(f"error: {exc.format_message()}", file=sys.stderr)
            sys.exit(int(exc.exit_code) or 2)
        raise
    sys.exit(0)
