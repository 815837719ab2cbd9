"""Daily reports: figures, incidents and reconciliation with the live monitor, as HTML/CSV/JSON."""

from __future__ import annotations

from tollwatch.report.build import ReportResult, build_report, prune
from tollwatch.report.period import Period
from tollwatch.report.summary import summary_text

__all__ = ["Period", "ReportResult", "build_report", "prune", "summary_text"]
