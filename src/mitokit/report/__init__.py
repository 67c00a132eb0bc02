"""Reports a person can look at: static HTML pages with figures beside them, and the files of a
slide's prediction (detections, tiles, heat map, summary: :mod:`mitokit.report.slide_outputs`)."""

from mitokit.report.html import HtmlReport

__all__ = ["HtmlReport"]
