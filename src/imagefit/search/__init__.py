"""The most accurate model a time budget buys: CV-chosen linear heads, backbones, their composite, resolution.

Library functions the training run and the CLI call (``--budget``): see :func:`search`
and :func:`~imagefit.search.linear.fit_linear`.
"""

from .budget import parse_budget
from .leaderboard import Entry, Leaderboard
from .linear import LinearFit, fit_linear, to_head
from .runner import Candidate, SearchResult, search
from .sources import FeatureSource, SourceKey

__all__ = [
    "Candidate",
    "Entry",
    "FeatureSource",
    "Leaderboard",
    "LinearFit",
    "SearchResult",
    "SourceKey",
    "fit_linear",
    "parse_budget",
    "search",
    "to_head",
]
