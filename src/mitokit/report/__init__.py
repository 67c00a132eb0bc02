"""Reports a person can look at: static HTML pages with figures beside them."""

from mitokit.report.html import HtmlReport

__all__ = ["HtmlReport"]
