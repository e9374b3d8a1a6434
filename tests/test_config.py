"""RunConfig: validation messages, flat options, JSON round trip and type checks."""

from __future__ import annotations

import dataclasses
import json

import pytest

from imagefit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from imagefit.errors import ConfigError


@pytest.mark.parametrize(
    ("cls", "kwargs", "pattern"),
    [
        (DataConfig, {"val_split": 0.95}, r"invalid val_split: received 0\.95; allowed: a number in \[0\.0, 0\.9\]"),
        (DataConfig, {"val_split": -0.1}, r"val_split: received -0\.1"),
        (DataConfig, {"augment": "extreme"}, r"invalid augment: received 'extreme'; allowed: none, light, heavy"),
        (DataConfig, {"img_size": 16}, r"img_size: received 16; allowed: an integer from 32 to 1024"),
        (DataConfig, {"workers": -1}, r"workers: received -1"),
        (ModelConfig, {"name": ""}, r"invalid model: received ''; allowed: a backbone name"),
        (ModelConfig, {"hidden": -5}, r"hidden: received -5"),
        (ModelConfig, {"dropout": 1.0}, r"dropout: received 1\.0; allowed: a number in \[0\.0, 0\.95\]"),
        (TrainConfig, {"strategy": "magic"}, r"invalid strategy: received 'magic'; allowed: linear, finetune, full"),
        (TrainConfig, {"optimizer": "lbfgs"}, r"optimizer: received 'lbfgs'; allowed: adam, adamw, sgd"),
        (TrainConfig, {"monitor": "f1"}, r"monitor: received 'f1'; allowed: val_loss, val_accuracy, loss, accuracy"),
        (TrainConfig, {"epochs": 0}, r"epochs: received 0; allowed: a positive integer"),
        (TrainConfig, {"head_epochs": 0}, r"head_epochs: received 0"),
        (TrainConfig, {"batch_size": 0}, r"batch_size: received 0"),
        (TrainConfig, {"lr": 0.0}, r"lr: received 0\.0; allowed: a number in \(0\.0, 10\.0\]"),
        (TrainConfig, {"lr": 11.0}, r"lr: received 11\.0"),
        (TrainConfig, {"weight_decay": -1e-4}, r"weight_decay: received -0\.0001"),
        (TrainConfig, {"unfreeze": 0}, r"unfreeze: received 0; allowed: a fraction in \(0, 1\) or a whole number"),
        (TrainConfig, {"unfreeze": 2.5}, r"unfreeze: received 2\.5"),
        (TrainConfig, {"patience": 0}, r"patience: received \(0, 2\)"),
        (TrainConfig, {"lr_factor": 0.0}, r"lr_factor: received 0\.0"),
    ],
)
def test_validation_says_received_and_allowed(cls: type, kwargs: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert "received" in msg and "allowed" in msg


def test_config_error_is_value_error_with_exit_code_2() -> None:
    with pytest.raises(ValueError):
        TrainConfig(strategy="x")
    assert ConfigError("x").exit_code == 2


def test_defaults_and_resolved_values() -> None:
    c = RunConfig()
    # auto: lite0 first (a stronger backbone only where lite0 leaves room, see tests/search/test_auto.py).
    assert c.model.name == "auto" and c.model.backbone == "lite0" and c.model.pretrained and c.train.strategy == "linear"
    assert ModelConfig(name="lite2").backbone == "lite2"
    assert c.data.val_split == 0.2 and c.data.augment == "none"
    t = TrainConfig()
    assert (t.resolved_epochs, t.resolved_lr, t.resolved_batch_size) == (60, 3e-3, 128)
    f = TrainConfig(strategy="finetune")
    assert (f.resolved_epochs, f.resolved_lr, f.resolved_batch_size) == (4, 5e-4, 32)
    full = TrainConfig(strategy="full", epochs=2, lr=0.5, batch_size=7)
    assert (full.resolved_epochs, full.resolved_lr, full.resolved_batch_size) == (2, 0.5, 7)
    assert TrainConfig(unfreeze=3).unfreeze == 3 and TrainConfig(unfreeze=0.5).unfreeze == 0.5


def test_from_options_sorts_options_into_sections() -> None:
    c = RunConfig.from_options(
        model="lite1", strategy="finetune", epochs=3, lr=1e-4, seed=1, val_split=0.3, augment="light", hidden=64, pretrained=False
    )
    assert c.model.name == "lite1" and c.model.hidden == 64 and c.model.pretrained is False
    assert c.train.strategy == "finetune" and c.train.epochs == 3 and c.train.lr == 1e-4 and c.train.seed == 1
    assert c.data.val_split == 0.3 and c.data.augment == "light"


def test_from_options_none_means_default() -> None:
    c = RunConfig.from_options(epochs=None, lr=None, val_split=None, model=None)
    assert c == RunConfig()


def test_from_options_unknown_option_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_options(learning_rate=0.1)
    msg = str(info.value)
    assert "invalid option: received 'learning_rate'" in msg
    for name in ("lr", "epochs", "model", "val_split", "augment", "strategy", "seed"):
        assert name in msg


def test_from_options_validates_values() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        RunConfig.from_options(strategy="nope")
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        RunConfig.from_options(epochs="3")


def test_dict_round_trip_through_json() -> None:
    c = RunConfig.from_options(
        model="simple_cnn",
        strategy="full",
        epochs=4,
        lr=0.01,
        batch_size=8,
        img_size=96,
        augment="heavy",
        unfreeze=2,
        class_weights=True,
        monitor="val_accuracy",
    )
    d = json.loads(json.dumps(c.to_dict()))
    assert set(d) == {"data", "model", "train"}
    again = RunConfig.from_dict(d)
    assert again == c
    assert again.to_dict() == c.to_dict()


def test_from_dict_partial_and_int_for_float() -> None:
    c = RunConfig.from_dict({"train": {"lr": 1, "epochs": 5.0}})
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
    assert c.train.epochs == 5 and isinstance(c.train.epochs, int)
    assert c.data == DataConfig() and c.model == ModelConfig()


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ([], r"config must be a JSON object, received list"),
        ({"train": []}, r"config\.train must be an object, received list"),
        ({"train": {"epochs": "3"}}, r"invalid train\.epochs: received '3'; allowed: a value of type int"),
        ({"train": {"epochs": 2.5}}, r"train\.epochs: received 2\.5"),
        ({"train": {"epochs": True}}, r"train\.epochs: received True"),
        ({"train": {"lr": "fast"}}, r"train\.lr: received 'fast'; allowed: a value of type float"),
        ({"train": {"lr": False}}, r"train\.lr: received False"),
        ({"train": {"class_weights": 1}}, r"train\.class_weights: received 1; allowed: a value of type bool"),
        ({"train": {"seed": None}}, r"train\.seed: received None"),
        ({"model": {"name": 5}}, r"model\.name: received 5; allowed: a value of type str"),
        ({"model": {"pretrained": "yes"}}, r"model\.pretrained: received 'yes'"),
        ({"data": {"val_split": [0.2]}}, r"data\.val_split: received \[0\.2\]"),
        (
            {"data": {"colour": 1}},
            r"invalid data option: received 'colour'; allowed: augment, brightness, filename_label_regex, flip, img_size, "
            r"labels_from_filename, loader, rotation, shear, shift, val_split, workers, zoom",
        ),
        ({"train": {"strategy": "sideways"}}, r"strategy: received 'sideways'"),
    ],
)
def test_from_dict_wrong_types(raw: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_dict(raw)


def test_from_dict_optional_none_allowed() -> None:
    c = RunConfig.from_dict({"train": {"epochs": None, "lr": None}, "data": {"img_size": None}})
    assert c.train.epochs is None and c.data.img_size is None


# -- every field documented, settings resolved once ---------------------------------------
def test_every_field_has_help_and_choices_match() -> None:
    from imagefit.config import AUGMENTS, FLIPS, LOADERS, MONITORS, OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, STRATEGIES

    choices = {
        "augment": AUGMENTS,
        "flip": FLIPS,
        "loader": LOADERS,
        "monitor": MONITORS,
        "optimizer": OPTIMIZERS,
        "precision": PRECISIONS,
        "preset": PRESETS,
        "schedule": SCHEDULES,
        "strategy": STRATEGIES,
    }
    for sub in (RunConfig, DataConfig, ModelConfig, TrainConfig):
        for f in dataclasses.fields(sub):
            assert f.metadata.get("help"), f"{sub.__name__}.{f.name} has no help text"
            assert f.metadata.get("choices") == choices.get(f.name), f.name


def _spec(**kw):  # type: ignore[no-untyped-def]
    from imagefit.models import get_spec

    return dataclasses.replace(get_spec("simple_cnn"), **kw)


def test_resolve_linear_and_img_size() -> None:
    from imagefit.config import PhaseSettings, resolve

    s = resolve(RunConfig.from_options(img_size=96), _spec())
    assert s.preprocess == dataclasses.replace(_spec().preprocess, input_size=96)
    assert s.head == PhaseSettings(60, 3e-3, 128) and s.images is None and s.loader == "pillow"
    assert resolve(RunConfig(), _spec()).preprocess == _spec().preprocess


def test_resolve_finetune_head_phase_and_gpu_scaling() -> None:
    from imagefit.config import PhaseSettings, resolve

    s = resolve(RunConfig.from_options(strategy="finetune", head_epochs=7), _spec(), "cuda")
    assert s.head == PhaseSettings(7, 3e-3, 128)
    # Scaled linearly with the batch (Goyal et al.) but a pretrained backbone is fine-tuned at most at full's 1e-3.
    assert s.images == PhaseSettings(4, 1e-3, 256) and s.loader == "device"
    assert resolve(RunConfig.from_options(strategy="finetune", batch_size=64), _spec(), "cuda").images == PhaseSettings(4, 1e-3, 64)
    assert resolve(RunConfig.from_options(strategy="finetune", batch_size=16), _spec(), "cuda").images == PhaseSettings(4, 2.5e-4, 16)
    s = resolve(RunConfig.from_options(strategy="full", lr=0.01, batch_size=8, epochs=2), _spec(), "cuda")
    assert s.head is None and s.images == PhaseSettings(2, 0.01, 8)
    assert s.to_dict()["images"] == {"epochs": 2, "lr": 0.01, "batch_size": 8}


def test_resolve_head_defaults_of_the_backbone() -> None:
    from imagefit.config import resolve

    s = resolve(RunConfig(), _spec(default_hidden=64, default_dropout=0.4))
    assert (s.hidden, s.dropout) == (64, 0.4)
    s = resolve(RunConfig.from_options(hidden=8, dropout=0.1), _spec(default_hidden=64, default_dropout=0.4))
    assert (s.hidden, s.dropout) == (8, 0.1)


def test_finetune_runs_one_cycle_by_default_and_the_others_reduce_on_plateau() -> None:
    from imagefit.config import resolve

    assert resolve(RunConfig.from_options(strategy="finetune"), _spec()).schedule == "onecycle"  # fastai's fine_tune
    assert resolve(RunConfig(), _spec()).schedule == "plateau"
    assert resolve(RunConfig.from_options(strategy="full"), _spec()).schedule == "plateau"
    assert resolve(RunConfig.from_options(strategy="finetune", schedule="plateau"), _spec()).schedule == "plateau"
    assert resolve(RunConfig.from_options(schedule="cosine"), _spec()).to_dict()["schedule"] == "cosine"
