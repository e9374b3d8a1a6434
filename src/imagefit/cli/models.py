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
    from rich.table import Table

    from ..models import list_backbones, weights_available

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
