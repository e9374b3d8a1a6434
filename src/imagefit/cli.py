"""Command line: a thin typer layer over the Python API.

Every :class:`~imagefit.errors.ImagefitError` and every usage error becomes one
line on stderr and a non-zero exit (2 for usage, 130 for Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .errors import ImagefitError
from .ui import console

# Results go to stdout (pipe them); progress, warnings and skipped-file lists to stderr.
stdout = Console(highlight=False, soft_wrap=True)

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
    data: Annotated[
        Path | None, typer.Argument(help="Class folders, train/+val/ folders, cat.0.jpg-style names, or a CSV (not needed with --resume).")
    ] = None,
    val: Annotated[Path | None, typer.Option(help="Separate validation data.")] = None,
    val_split: Annotated[float | None, typer.Option(help="Validation share when there is no validation data (default 0.2).")] = None,
    model: Annotated[str, typer.Option(help="Backbone (see `imagefit models`).")] = "lite0",
    strategy: Annotated[
        Strategy, typer.Option(help="linear: frozen backbone, cached features; finetune: + last blocks; full: everything.")
    ] = Strategy.linear,
    img_size: Annotated[int | None, typer.Option(help="Input size (default: the backbone's).")] = None,
    augment: Annotated[Augment, typer.Option(help="none, light (flip) or heavy (rotate/zoom/shift/shear/flip).")] = Augment.none,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the main phase (default by strategy).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default by strategy).")] = None,
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
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<model>-<strategy>-<time>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    workers: Annotated[int, typer.Option(help="Decoding workers (0: automatic).")] = 0,
    loader: Annotated[
        str, typer.Option(help="finetune/full image decoding: auto (GPU nvjpeg on CUDA, else Pillow), pillow, device.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Train a classifier; writes model.safetensors, imagefit.json and history.csv to a run folder."""
    import imagefit

    from .errors import ConfigError

    if data is None and not resume:
        raise ConfigError("missing argument DATA (only `train --resume --out RUN` may leave it out)")
    if resume and out is None:
        raise ConfigError("--resume needs --out RUN, the folder of the run to continue")
    run = imagefit.train(
        data,
        val=val,
        out=out,
        resume=resume,
        progress=True,
        val_split=val_split,
        model=model,
        strategy=strategy.value,
        img_size=img_size,
        augment=augment.value,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer.value,
        weight_decay=weight_decay,
        unfreeze=unfreeze,
        hidden=hidden,
        dropout=dropout,
        class_weights=class_weights,
        patience=patience,
        seed=seed,
        labels_from_filename=labels_from_filename,
        pretrained=pretrained,
        workers=workers,
        loader=loader,
        device=device,
    )
    from .evaluate import summary_line

    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun only rank 0 reports
    stdout.print(f"validation: {summary_line(run.metrics)}")
    stdout.print(f"run folder: {run.path}  ({run.seconds:.1f} s)")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[Path, typer.Argument(help="Labeled data (any layout).")],
    tta: Annotated[bool, typer.Option("--tta", help="Average with the mirror image.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Metrics JSON (default RUN/eval-<time>.json); report.html and its PNGs go to the folder of the same name without .json."
        ),
    ] = None,
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
) -> None:
    """Evaluate a trained model on labeled data; prints and saves the metrics as JSON, writes report.html."""
    import imagefit

    from .evaluate import summary_line
    from .paths import atomic_write_json
    from .report import write_eval_report

    model = imagefit.load(run)
    # An unwritable --out (or run folder) fails now, not after the whole evaluation.
    _check_dest(out or run / "eval.json")
    ev = model.evaluate_details(data, tta=tta, progress=True, labels_from_filename=labels_from_filename)
    metrics = ev.metrics
    path = out or (run / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write_json(path, metrics)
    report = write_eval_report(path.with_suffix("") if path.suffix else path.with_name(path.name + "-report"), model.meta, ev, run)
    stdout.print(summary_line(metrics))
    cal = metrics["calibration"]
    stdout.print(
        f"calibration: T {cal['temperature']:.3f}; log loss {cal['log_loss_before']:.4f} uncalibrated -> {cal['log_loss_after']:.4f}; "
        f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}"
    )
    _print_skipped(metrics["skipped"])
    stdout.print(f"metrics: {path}")
    stdout.print(f"report: {report}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders (recursive).")],
    out: Annotated[Path | None, typer.Option(help="CSV to write (default predictions.csv, or submission.csv with --kaggle).")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average with the mirror image.")] = False,
    clip: Annotated[
        float,
        typer.Option(
            help="Clip probabilities to [CLIP, 1-CLIP], e.g. 0.005: caps the log loss of a confident mistake at -log(CLIP). "
            "A blunt tool next to the temperature scaling every model already has: it costs a little on every confident right answer.",
        ),
    ] = 0.0,
    kaggle: Annotated[
        bool,
        typer.Option(
            "--kaggle",
            help="Write a Kaggle submission: id,label rows sorted by the numeric id of 1.jpg-style names, label = probability of the second class.",
        ),
    ] = False,
) -> None:
    """Predict images; writes path, label and one (calibrated) probability column per class."""
    import numpy as np

    import imagefit

    model = imagefit.load(run)
    # An unwritable --out fails now, not after every photo has been predicted.
    _check_dest(out or Path("submission.csv" if kaggle else "predictions.csv"))
    preds = model.predict(paths, tta=tta, progress=True)
    if clip:
        preds = _clipped(preds, clip)
    if kaggle:
        from .kaggle import write_submission

        dest = out or Path("submission.csv")
        probs = preds.probs if preds.probs is not None else np.zeros((0, len(model.classes)))
        missing = [Path(s["path"]) for s in preds.skipped.as_list()]
        write_submission(dest, [Path(r["path"]) for r in preds.records], probs, model.classes, missing)
        _print_skipped(preds.skipped.as_list())
        if missing:
            console.print(f"[yellow]{len(missing)} unreadable photo(s) got the uniform probability so that every id has a row[/]")
        what = f"label = P({model.classes[1]})" if len(model.classes) == 2 else "one probability column per class"
        stdout.print(f"{len(preds) + len(missing)} rows ({what}) -> {dest}")
        return
    dest = out or Path("predictions.csv")
    preds.to_csv(dest)
    _print_skipped(preds.skipped.as_list())
    stdout.print(f"{len(preds)} predictions -> {dest}")


def _check_dest(path: Path) -> None:
    """Raise OutputError now if ``path``'s folder cannot be written or its disk is full."""
    from .train.run import check_writable

    check_writable(path.parent, need_bytes=16 * 2**20)


def _clipped(preds, low: float):  # type: ignore[no-untyped-def]
    """Predictions with probabilities clipped to [low, 1-low] (see --clip)."""
    import numpy as np

    from .calibrate import clip_probabilities
    from .predict import Predictions, make_records

    probs = clip_probabilities(preds.probs if preds.probs is not None else np.zeros((0, len(preds.classes))), low)
    paths = [Path(r["path"]) for r in preds.records]
    records = make_records(paths, np.arange(len(paths)), probs, preds.classes)
    return Predictions(records, preds.classes, preds.skipped, preds.indices, probs)


@app.command("inspect")
def inspect_cmd(
    data: Annotated[Path, typer.Argument(help="Data folder or CSV.")],
    labels_from_filename: Annotated[bool, typer.Option("--labels-from-filename")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Also write an HTML report here, with a grid of sample photos per class (PNG beside it)."),
    ] = None,
) -> None:
    """Class counts, imbalance ratio, unreadable files and image size range."""
    from .inspect import inspect_data

    rep = inspect_data(data, labels_from_filename=labels_from_filename)
    if report is not None:
        _inspect_report(data, rep, report, labels_from_filename)
    if as_json:
        _out(rep)
        return
    stdout.print(f"{rep['data']}: layout '{rep['layout']}', classes {rep['classes']}")
    for name, s in rep["splits"].items():
        size = s.get("size")
        size_text = f", sizes {size['min'][0]}x{size['min'][1]} .. {size['max'][0]}x{size['max'][1]}" if size else ""
        ratio = f", imbalance {s['imbalance_ratio']:.2f}" if s["imbalance_ratio"] else ""
        stdout.print(f"  {name}: {s['n_readable']}/{s['n_files']} readable, counts {s['counts']}{ratio}{size_text}")
        _print_skipped(s["unreadable"], indent="    ")


@app.command()
def models() -> None:
    """Every registered backbone, its input size, and whether its weights are available offline."""
    from .models import list_backbones, weights_available

    table = Table("name", "input", "features", "weights", "offline")
    for spec in list_backbones():
        scratch = spec.weights.startswith("none")
        table.add_row(
            spec.name,
            str(spec.input_size),
            str(spec.num_features),
            spec.weights,
            "n/a (scratch)" if scratch else ("yes" if weights_available(spec.name) else "no"),
        )
    stdout.print(table)
    stdout.print("Any timm model name also works (weights from the local Hugging Face cache, or --no-pretrained).")


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/demo-<time>).")] = None,
) -> None:
    """Train, evaluate and predict on the bundled sample of cats and dogs."""
    import imagefit

    from .evaluate import summary_line

    sample = Path(__file__).parent / "sample_data"
    out = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    stdout.print(f"[bold]imagefit demo[/]: training lite0 (linear) on {sample} (see its README for provenance)")
    run = imagefit.train(sample / "train", val=sample / "val", out=out, progress=True, seed=0)
    model = imagefit.load(run.path)
    metrics = model.evaluate(sample / "val")
    preds = model.predict([sample / "val"])
    csv_path = preds.to_csv(run.path / "predictions.csv")
    stdout.print(f"validation: {summary_line(metrics)}")
    for r in preds.records[:3]:
        stdout.print(f"  {Path(r['path']).name}: {r['label']} ({r['probability']:.3f})")
    stdout.print(f"written: {run.path}/ model.safetensors, imagefit.json, history.csv, metrics.json; predictions {csv_path}")


def _inspect_report(data: Path, rep: dict, path: Path, labels_from_filename: bool, per_class: int = 6) -> None:
    """Write inspect's HTML report: a few photos per class of the training split."""
    import random

    from .data.discover import discover
    from .report import write_inspect_report

    found = discover(data, labels_from_filename=labels_from_filename)
    train = found.train
    rng = random.Random(0)  # the same photos every time, so reports can be compared
    samples = {}
    for k, c in enumerate(train.classes):
        ps = [p for p, y in zip(train.paths, train.labels) if y == k]
        samples[c] = sorted(rng.sample(ps, min(per_class, len(ps))))
    written = write_inspect_report(path, rep, samples)
    stdout.print(f"report: {written}")


@app.command()
def interpret(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[
        Path | None, typer.Argument(help="Labeled data, found as `train` finds it (default: the run's own training data).")
    ] = None,
    val: Annotated[Path | None, typer.Option(help="Separate validation data.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/interpret-<time>).")] = None,
    top: Annotated[int, typer.Option(help="How many top losses to list and show.")] = 16,
    folds: Annotated[int, typer.Option(help="k of the k-fold out-of-fold predictions on the training photos.")] = 5,
    low: Annotated[float, typer.Option(help="Flag a training photo when its label's out-of-fold probability is below this...")] = 0.2,
    high: Annotated[float, typer.Option(help="...and another class's probability is at least this.")] = 0.7,
    tta: Annotated[bool, typer.Option("--tta", help="Average validation predictions with the mirror image.")] = False,
) -> None:
    """Top losses, most confused class pairs, and likely-mislabeled training photos (CSV files + report.html)."""
    from .interpret import interpret as run_interpret

    res = run_interpret(run, data, val=val, out=out, top=top, folds=folds, low=low, high=high, tta=tta, progress=True)
    m = res.metrics
    stdout.print(f"validation: accuracy {m['accuracy']:.4f}, log loss {m['log_loss']:.4f} on {m['n_images']} photos")
    table = Table("photo", "true", "predicted", "p", "loss", title=f"top {min(5, len(res.top_losses))} losses")
    for r in res.top_losses[:5]:
        table.add_row(
            Path(r["path"]).name,
            r["label"],
            r["predicted"],
            f"{r['p_predicted']:.3f}",
            f"{r['loss']:.2f}",
            style="red" if r["wrong"] else None,
        )
    stdout.print(table)
    if res.confused:
        stdout.print("most confused: " + "; ".join(f"{p['label']} -> {p['predicted']} ({p['count']})" for p in res.confused[:5]))
    o = res.oof
    if o["folds"]:
        stdout.print(
            f"training photos: {o['n_flagged']} of {o['n_train']} flagged as likely mislabeled ({o['folds']}-fold out-of-fold accuracy {o['accuracy']:.4f})"
        )
        for r in res.suspects[:10]:
            stdout.print(f"  {r['path']}: given {r['label']} ({r['p_label']:.3f}), looks {r['suggested']} ({r['p_suggested']:.3f})")
    else:
        console.print("[yellow]training photos: too few per class for k-fold; no mislabel check[/]")
    stdout.print(f"report: {res.report}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders.")],
    out: Annotated[Path | None, typer.Option(help="Folder for compare.png, compare.csv and report.html (default compare-<time>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
) -> None:
    """Compare runs' validation metrics: accuracy, log loss, model, strategy, seconds."""
    from .report.compare import comparable_note, rich_table, write_compare_report
    from .report.compare import compare as compare_runs

    rows = compare_runs(runs)
    report = write_compare_report(rows, out or Path(f"compare-{time.strftime('%Y%m%d-%H%M%S')}"))
    if as_json:
        _out(rows)
    else:
        stdout.print(rich_table(rows))
    note = comparable_note(rows)
    if note:
        console.print(f"[yellow]{note}[/]")
    # With --json, stdout carries the JSON alone so it can be piped.
    (console if as_json else stdout).print(f"report: {report}")


@app.command("kaggle-prep")
def kaggle_prep(
    train_dir: Annotated[Path, typer.Argument(help="Flat Kaggle folder of cat.0.jpg, dog.1.jpg ...")],
    out: Annotated[Path | None, typer.Option(help="Where the class folders go (default TRAIN_DIR-by-class).")] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Remove what an earlier kaggle-prep made (from its manifest).")] = False,
) -> None:
    """Organise a flat Kaggle folder into class folders of links (symbolic, else hard); nothing is copied."""
    from .kaggle import prep
    from .kaggle import undo as undo_prep

    if undo:
        res = undo_prep(train_dir, out)
        stdout.print(f"removed {sum(res.counts.values())} link(s) from {res.out}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items()))
        if res.ignored:
            console.print(f"[yellow]kept {len(res.ignored)} file(s) that are not links made by kaggle-prep, e.g. {res.ignored[0]}[/]")
        return
    res = prep(train_dir, out)
    stdout.print(
        f"{res.out}: " + ", ".join(f"{k}/ {v} photos" for k, v in res.counts.items()) + f" ({res.method}s to {res.source}, nothing copied)"
    )
    if res.ignored:
        console.print(f"[yellow]ignored {len(res.ignored)} file(s) without a label in the name, e.g. {res.ignored[0].name}[/]")
    stdout.print(f"manifest: {res.manifest} (undo with: imagefit kaggle-prep {train_dir}{f' --out {out}' if out else ''} --undo)")
    stdout.print(f"train with: imagefit train {res.out}")


@app.command()
def score(
    submission: Annotated[Path, typer.Argument(help="Submission CSV: id,label (probability of class 1).")],
    solution: Annotated[Path, typer.Argument(help="Solution CSV: id,label (0 or 1).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Log loss (clipped at 1e-15, as Kaggle) and accuracy of a submission against a solution."""
    from .kaggle import score as score_submission

    res = score_submission(submission, solution)
    if as_json:
        _out(res)
        return
    typer.echo(f"log loss {res['log_loss']:.5f}  accuracy {res['accuracy']:.4f}  ({res['n']} rows)")


@app.command()
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
        from .serve.app import ServeSettings
        from .serve.app import serve as run_server
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


def _print_skipped(items: list[dict[str, str]], indent: str = "") -> None:
    if items:
        console.print(f"{indent}[yellow]skipped {len(items)} unreadable file(s):[/]")
        from .ui import plain

        for it in items:
            console.print(f"{indent}  {plain(it['path'])}: {plain(it['reason'])}")


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
    imported takes ~1 s (measured: 0.6-1.2 s) and does nothing useful here:
    every file is written atomically and closed before a command returns. So
    once output is flushed the process ends with ``os._exit``. Unexpected
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
