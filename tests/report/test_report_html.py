"""The static HTML report links its images relatively and escapes text."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
from PIL import Image

from mitokit.report import HtmlReport


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.cells = [], []
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        self._in_td = tag == "td"

    def handle_data(self, data):
        if self._in_td:
            self.cells.append(data)
            self._in_td = False


def test_report_links_images_and_formats_tables(tmp_path):
    fig = tmp_path / "figs" / "a.png"
    fig.parent.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(fig)
    rep = HtmlReport("Demo <1>", root=tmp_path)
    rep.paragraph("intro & more")
    rep.section("Labels")
    rep.image(fig, caption="a figure")
    rep.table([["kappa", 0.12345, float("nan")]], header=["what", "value", "other"], digits=2)
    page = rep.write()
    text = page.read_text()
    assert "Demo &lt;1&gt;" in text and "intro &amp; more" in text
    p = _Collect()
    p.feed(text)
    assert p.imgs == ["figs/a.png"] and (tmp_path / p.imgs[0]).is_file()
    assert p.cells == ["kappa", "0.12", "n/a"]
