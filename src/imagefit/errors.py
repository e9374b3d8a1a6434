"""One error hierarchy for the whole library.

The CLI turns any :class:`ImagefitError` into one clear line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, overload


class ImagefitError(Exception):
    """Base class of every error imagefit raises on purpose."""

    exit_code: int = 1


E = TypeVar("E", bound=ImagefitError)


class ConfigError(ImagefitError, ValueError):
    """An option has a value that is not allowed."""

    exit_code = 2


class DataError(ImagefitError):
    """The data folder, CSV or image set cannot be used as given."""


class BadImageError(DataError):
    """One file could not be read as an image (it is skipped, not fatal)."""


class ModelError(ImagefitError):
    """A backbone is unknown or its weights cannot be had."""


class ArtifactError(ImagefitError):
    """A run folder or model file is missing, malformed or untrusted."""


class OutputError(ImagefitError, OSError):
    """The output folder cannot be written.

    Also an :class:`OSError`, so that code which tolerates a failed write
    (``except OSError``) keeps doing so now that writes raise this.
    """


@overload
def invalid(name: str, received: object, allowed: Iterable[object] | str) -> ConfigError: ...
@overload
def invalid(name: str, received: object, allowed: Iterable[object] | str, error: type[E]) -> E: ...


def invalid(name: str, received: object, allowed: Iterable[object] | str, error: type[ImagefitError] = ConfigError) -> ImagefitError:
    """Build a Keras-style error that says what was received and what is allowed.

    Args:
        name: The option's (or field's) name as the user wrote it.
        received: The value received.
        allowed: The allowed values, or a sentence describing them.
        error: The class: :class:`ConfigError` (a usage mistake, exit 2) unless
            the value came from data (:class:`DataError`) or a model file
            (:class:`ArtifactError`).

    Returns:
        The error, ready to raise.
    """
    if isinstance(allowed, str):
        allowed_text = allowed
    else:
        allowed_text = ", ".join(str(a) for a in allowed)
    return error(f"invalid {name}: received {received!r}; allowed: {allowed_text}")
