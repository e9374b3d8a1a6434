"""ServeSettings: every serve default, bound and help in one place, used by create_app, workers and the CLI."""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path

import pytest

from imagefit.errors import ConfigError
from imagefit.serve.settings import ServeSettings

FIELDS = [f.name for f in dataclasses.fields(ServeSettings)]


def test_every_setting_has_help_and_a_valid_default() -> None:
    s = ServeSettings()  # the defaults pass their own bounds
    for name in FIELDS:
        assert ServeSettings.help(name).strip(), name
        assert getattr(s, name) == ServeSettings.default(name)
    assert s.max_pixels == 64_000_000 and s.max_files == 32 and s.max_bytes == 20 * 2**20


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_upload_mb", 0),
        ("max_pixels", 0),
        ("max_pixels", 1.5),
        ("max_files", 0),
        ("max_files", True),
        ("timeout_s", -1),
        ("timeout_s", math.nan),
        ("batch_window_ms", -1),
        ("batch_window_ms", 5000),
        ("max_batch", 0),
        ("max_request_pixels", 0),
        ("big_decode_workers", 0),
        ("max_pending", 4),  # below max_files
        ("max_request_pixels", 10**10),  # over max_inflight_pixels: could never be admitted
    ],
)
def test_out_of_bounds_is_a_config_error(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"invalid {name}: received"):
        ServeSettings(**{name: value})  # type: ignore[arg-type]


def test_json_round_trip_and_unknown_keys() -> None:
    s = ServeSettings("runs/a", max_pixels=144_000_000, timeout_s=5.0)
    assert ServeSettings.from_json(s.to_json()) == s
    with pytest.raises(ConfigError, match="invalid serve setting: received 'max_pixel'"):
        ServeSettings.from_json('{"max_pixel": 5}')
    assert s.replace(max_files=4).max_files == 4
    with pytest.raises(ConfigError):
        s.replace(max_files=0)


def test_limits_shown_by_model_endpoint() -> None:
    limits = ServeSettings(max_pixels=144_000_000).limits()
    assert limits["max_pixels"] == 144_000_000
    assert {"max_upload_mb", "max_files", "timeout_s", "max_pending", "max_request_pixels", "max_inflight_pixels"} <= set(limits)
    assert "run_path" not in limits


def test_cli_serve_defaults_are_the_settings_defaults() -> None:
    """The CLI must not restate a default differently (it should read them from ServeSettings)."""
    from imagefit.cli.serve import serve as serve_command

    params = inspect.signature(serve_command).parameters
    shared = [name for name in FIELDS if name in params]
    assert shared, "imagefit serve exposes no setting"
    for name in shared:
        assert params[name].default == ServeSettings.default(name), name


def test_app_from_env(monkeypatch: pytest.MonkeyPatch, trained_run: Path) -> None:
    from imagefit.serve.app import ENV_CONFIG, app_from_env

    monkeypatch.setenv(ENV_CONFIG, ServeSettings(str(trained_run), max_files=3, max_pending=3).to_json())
    app = app_from_env()
    assert app.state.settings.max_files == 3
    monkeypatch.setenv(ENV_CONFIG, '{"run_path": "x", "max_files": 0}')
    with pytest.raises(ConfigError, match="invalid max_files"):
        app_from_env()
