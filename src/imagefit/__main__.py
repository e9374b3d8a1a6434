"""``python -m imagefit`` (also what torchrun launches)."""

from .cli import run

run()
