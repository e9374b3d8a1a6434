"""``imagefit models [NAME]``: the registered backbones, or one backbone's summary (Keras's ``model.summary()``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._common import out_json, stdout


def models(
    name: Annotated[str | None, typer.Argument(help="A backbone to summarize (registered or timm name); none lists them all.")] = None,
    unfreeze: Annotated[float, typer.Option(help="finetune's --unfreeze, to mark which blocks it trains.")] = 0.25,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every registered backbone, its input size, and whether its weights are available offline; or one backbone's summary."""
    if name is None:
        if as_json:
            import dataclasses

            from ..models.hub import catalogue

            out_json([dataclasses.asdict(row) for row in catalogue()])
        else:
            _list()
        return
    from ..config import TrainConfig
    from ..summary import backbone_summary

    TrainConfig(unfreeze=unfreeze)  # the same check (and message) as train's --unfreeze
    s = backbone_summary(name, unfreeze=unfreeze)
    if as_json:
        out_json(s)
    else:
        _print_summary(s)


def _list() -> None:
    """Registered backbones, then the hub's transfer backbones: available offline or the download size, ImageNet top-1, features."""
    from rich.table import Table

    from ..config import AUTO_ENOUGH
    from ..models import list_backbones, weights_available
    from ..models.backbones import _pretrained_cfg
    from ..models.hub import KNOWN, RECOMMENDED, catalogue

    top1 = {k.name: k.top1 for k in KNOWN}
    table = Table("name", "input", "features", "ImageNet top-1", "weights")
    table.add_column("offline", no_wrap=True)  # "downloads 114 MB" / "n/a (scratch)" read as one phrase
    registered = set()
    for spec in list_backbones():
        registered.add(spec.name)
        scratch = spec.weights.startswith("none")
        offline = "n/a (scratch)" if scratch else ("yes" if weights_available(spec.name) else "no")
        acc = f"{top1[spec.name]:.1f}%" if spec.name in top1 else "-"
        table.add_row(spec.name, str(spec.input_size), str(spec.num_features), acc, spec.weights, offline)
    for row in catalogue():
        if row.name in registered:
            continue
        cfg = _pretrained_cfg(row.name)
        size = str(cfg.input_size[-1]) if cfg is not None and getattr(cfg, "input_size", None) else "-"  # type: ignore[attr-defined]
        acc = f"{row.top1:.1f}%" if row.top1 is not None else "-"
        note = row.note + (" (recommended)" if row.recommended else "")
        table.add_row(row.name, size, str(row.features or "-"), acc, note, "yes" if row.available else row.status)
    stdout.print(table)
    stdout.print(f"Recommended for transfer learning: {', '.join(RECOMMENDED)} (weights download once, then work offline).")
    stdout.print("Any timm model name also works with --model (safetensors weights from the Hugging Face Hub, or --no-pretrained).")
    stdout.print("Join names with + to concatenate their features as one backbone: --model lite0+lite1+lite2 (linear strategy).")
    stdout.print(
        f"The default, --model auto: lite0, stepping up to lite0+lite1+lite2 when lite0's head gets under {AUTO_ENOUGH:.0%} "
        "of validation photos right."
    )
    stdout.print("`imagefit models NAME` summarizes one: parameters per block, what each strategy trains, preprocessing.")


def _print_summary(s: dict[str, Any]) -> None:
    from rich.table import Table

    pre = s["preprocessing"]
    offline = {None: "n/a (trained from scratch)", True: "available offline", False: "not available offline"}[s["weights_offline"]]
    stdout.print(f"[bold]{s['name']}[/] ({s['architecture']}){': ' + s['description'] if s['description'] else ''}")
    stdout.print(f"input: {s['input_size']}x{s['input_size']} RGB; features: {s['num_features']}")
    stdout.print(
        f"preprocessing: resize shorter side to {pre['resize']} ({pre['interpolation']}), center crop {pre['crop']} "
        f"(crop_pct {pre['crop_pct']}), normalize mean {tuple(round(m, 3) for m in pre['mean'])} std {tuple(round(v, 3) for v in pre['std'])}"
    )
    stdout.print(f"weights: {s['weights']} ({offline})")
    table = Table("block", "type", "params", f"finetune (--unfreeze {s['unfreeze']:g})", "full", title="backbone blocks, input to output")
    for b in s["blocks"]:
        table.add_row(str(b["index"]), b["type"], f"{b['params']:,}", "trained" if b["finetune"] else "frozen", "trained")
    stdout.print(table)
    stdout.print(
        f"parameters: {s['params']:,} in the backbone; trained: linear 0 (head only, on cached features), "
        f"finetune {s['finetune_params']:,}, full {s['params']:,}; plus the head ({s['num_features']} x classes + classes)"
    )
