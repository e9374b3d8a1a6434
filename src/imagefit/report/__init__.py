"""Reports you can look at: ``report.html`` (figures inlined) plus the PNGs, for runs, evaluations, data and comparisons."""

from __future__ import annotations

from .html import REPORT_FILE, write_eval_report, write_inspect_report, write_run_report

__all__ = ["REPORT_FILE", "write_eval_report", "write_inspect_report", "write_run_report"]
