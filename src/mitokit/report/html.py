"""A static HTML report: sections of text, tables and images, readable offline.

Images are referenced by relative path, so the page and its images travel together as one
folder. The page is written atomically.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitokit.io.atomic import write_text_atomic

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { border-bottom: 3px solid #8e3b8f; padding-bottom: .3rem; }
h2 { color: #5b2a6e; margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }
th { background: #f3eaf5; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .88rem; color: #555; }
.note { background: #f7f7f7; border-left: 4px solid #8e3b8f; padding: .5rem .8rem; }
code { background: #f2f2f2; padding: 0 .2rem; }
"""


@dataclass
class _Section:
    title: str
    parts: list[str] = field(default_factory=list)


class HtmlReport:
    """Build a report section by section, then :meth:`write` it.

    Args:
        title: Page title.
        root: Folder the page is written into; image paths are made relative to it.
    """

    def __init__(self, title: str, *, root: str | os.PathLike) -> None:
        self.title = title
        self.root = Path(root)
        self.sections: list[_Section] = []
        self.intro: list[str] = []

    def paragraph(self, text: str, *, note: bool = False) -> None:
        """Add a paragraph (plain text, escaped) to the current section or the intro."""
        cls = ' class="note"' if note else ""
        self._parts().append(f"<p{cls}>{html.escape(text)}</p>")

    def section(self, title: str) -> None:
        """Start a new section."""
        self.sections.append(_Section(title))

    def image(self, path: str | os.PathLike, *, caption: str = "", width: int | None = None):
        """Add an image (a file inside ``root``) with a caption."""
        rel = os.path.relpath(Path(path), self.root)
        style = f' style="width:{width}px"' if width else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts().append(
            f'<figure><a href="{html.escape(rel)}"><img src="{html.escape(rel)}" '
            f'alt="{html.escape(caption or rel)}"{style}></a>{cap}</figure>'
        )

    def table(
        self,
        rows: Sequence[Sequence[Any]],
        *,
        header: Sequence[str],
        caption: str = "",
        digits: int = 3,
    ) -> None:
        """Add a table; floats are shown with ``digits`` decimals."""

        def cell(v: Any) -> str:
            if isinstance(v, float):
                return "n/a" if v != v else f"{v:.{digits}f}"
            return html.escape(str(v))

        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts().append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def link(self, path: str | os.PathLike, text: str) -> None:
        """Add a link to a file inside ``root``."""
        rel = os.path.relpath(Path(path), self.root)
        self._parts().append(f'<p><a href="{html.escape(rel)}">{html.escape(text)}</a></p>')

    def render(self) -> str:
        """The page as HTML text."""
        toc = "".join(
            f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>'
            for i, s in enumerate(self.sections)
        )
        body = "".join(
            f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>{"".join(s.parts)}</section>'
            for i, s in enumerate(self.sections)
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{''.join(self.intro)}"
            f"<nav><ul>{toc}</ul></nav>{body}</body></html>\n"
        )

    def write(self, name: str = "index.html") -> Path:
        """Write the page into ``root`` (atomically) and return its path."""
        path = self.root / name
        write_text_atomic(path, self.render())
        return path

    def _parts(self) -> list[str]:
        return self.sections[-1].parts if self.sections else self.intro
