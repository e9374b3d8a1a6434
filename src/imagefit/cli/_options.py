"""``train``'s options, generated from the config dataclasses so the CLI, the Python API and the saved config never drift.

Every field of :class:`~imagefit.config.DataConfig`, :class:`~imagefit.config.ModelConfig`
and :class:`~imagefit.config.TrainConfig` becomes one flag: its name with dashes
(``lr_patience`` -> ``--lr-patience``; ``ModelConfig.name`` -> ``--model``), its
type, its default, and the ``help`` and ``choices`` of the field's metadata.
A switch that is on by default gets ``--x/--no-x``, one that is off ``--x``. Values are checked by the config classes themselves
(:meth:`~imagefit.config.RunConfig.from_options`), so a bad value is the same
``invalid ...`` error from the CLI and from Python.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from ..config import DataConfig, ModelConfig, TrainConfig

CONFIG_CLASSES = (DataConfig, ModelConfig, TrainConfig)
# Where a field's flag name is not the field's own (the API's option name, ``imagefit.train(model=...)``).
RENAMED: dict[tuple[type, str], str] = {(ModelConfig, "name"): "model"}
PANEL = "Training options (saved in imagefit.json)"


def config_fields() -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """``(option name, field, resolved type)`` of every config field, in class then field order."""
    for cls in CONFIG_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield RENAMED.get((cls, f.name), f.name), f, hints[f.name]


def flag(option: str) -> str:
    """``lr_patience`` -> ``--lr-patience``."""
    return "--" + option.replace("_", "-")


def _help(f: dataclasses.Field[Any]) -> str:
    text = str(f.metadata.get("help", "")).strip() or f.name.replace("_", " ").capitalize() + "."
    if f.default is None and "default" not in text:
        text += " (default: automatic)"
    return text


def _parameter(option: str, f: dataclasses.Field[Any], hint: Any, panel: str = PANEL) -> inspect.Parameter:
    choices = f.metadata.get("choices")
    default = None if f.default is dataclasses.MISSING else f.default  # the config fields are all plain values
    args = typing.get_args(hint)
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if base not in (bool, int, float, str):
        base = str  # a union such as float | str ("--lr auto"): the config decides what it accepts
    # A switch that is off by default is just ``--x`` (as before); one that is on gets ``--x/--no-x``.
    names = [f"{flag(option)}/--no-{flag(option)[2:]}"] if base is bool and default else [flag(option)]
    metavar = "[" + "|".join(str(c) for c in choices) + "]" if choices else None
    info = typer.Option(
        *names, help=_help(f), metavar=metavar, rich_help_panel=panel, show_default=default is not None and base is not bool
    )
    annotation = base if default is not None or base is bool else base | None
    return inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info])


def config_parameters() -> list[inspect.Parameter]:
    """One typer option per config field."""
    return [_parameter(option, f, hint) for option, f, hint in config_fields()]


def settings_parameters(cls: type, panel: str, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One typer option per field of a settings dataclass (e.g. the server's), minus ``exclude``."""
    hints = typing.get_type_hints(cls)
    return [_parameter(f.name, f, hints[f.name], panel) for f in dataclasses.fields(cls) if f.name not in exclude]


def with_config_options(command: Callable[..., Any], extra: list[inspect.Parameter] | None = None) -> Callable[..., Any]:
    """Give ``command`` (which takes ``**options``) one flag per config field (or the ``extra`` ones), after its own parameters."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params = own + (config_parameters() if extra is None else extra)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
