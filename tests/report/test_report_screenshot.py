"""The HTML report displays: headless Chromium renders its text, table and images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mitokit.errors import MitokitError
from mitokit.report import HtmlReport
from mitokit.report.screenshot import find_chromium, screenshot

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (chromium, chromium-browser, google-chrome or $MITOKIT_CHROMIUM)",
)

COLOUR = (0, 200, 60)  # a green nowhere in the report's own style
SIDE = 240


def _report(tmp_path):
    fig = tmp_path / "figs" / "square.png"
    fig.parent.mkdir()
    img = np.full((SIDE, SIDE + 60, 3), 255, np.uint8)
    img[:, 30 : 30 + SIDE] = COLOUR
    Image.fromarray(img).save(fig)
    rep = HtmlReport("Screenshot check", root=tmp_path)
    rep.paragraph("A page with a figure and a table.")
    rep.section("Figure")
    rep.image(fig, caption="a green square")
    rep.table([["F1", 0.75], ["precision", 0.8]], header=["metric", "value"])
    return rep.write()


def _colour_pixels(png):
    arr = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return arr, int((np.abs(arr - np.array(COLOUR)).max(axis=-1) <= 8).sum())


@needs_chromium
@pytest.mark.parametrize("height", [900, None], ids=["window", "full-page"])
def test_report_screenshot_shows_text_and_image(tmp_path, height):
    page = _report(tmp_path)
    out = screenshot(page, tmp_path / "shot" / "page.png", width=800, height=height)
    arr, green = _colour_pixels(out)
    if height is not None:
        assert arr.shape[:2] == (height, 800)
    else:
        assert 400 < arr.shape[0] < 2000 and arr.shape[1] == 800
    assert arr.std() > 10, "the screenshot is blank"
    assert (arr.max(axis=-1) < 100).sum() > 500, "no dark text on the page"
    # A broken image shows as a small icon, not as SIDE x SIDE green pixels.
    assert green >= 0.9 * SIDE * SIDE, f"only {green} pixels of the figure's colour"
    assert sorted(p.name for p in out.parent.iterdir()) == ["page.png"]  # no temporary left


def test_missing_html_is_a_user_error(tmp_path):
    with pytest.raises(MitokitError, match="no such HTML file"):
        screenshot(tmp_path / "nope.html", tmp_path / "out.png", chromium="/bin/true")
    assert not (tmp_path / "out.png").exists()


def test_failing_or_missing_browser_is_a_user_error(tmp_path):
    page = tmp_path / "p.html"
    page.write_text("<p>hi</p>")
    with pytest.raises(MitokitError, match="exit code 1"):
        screenshot(page, tmp_path / "out.png", chromium="false")
    with pytest.raises(MitokitError, match="not found"):
        screenshot(page, tmp_path / "out.png", chromium=tmp_path / "no-browser")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]


def test_find_chromium_honours_the_environment(monkeypatch, tmp_path):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MITOKIT_CHROMIUM", str(fake))
    assert find_chromium() == str(fake)
    monkeypatch.setenv("MITOKIT_CHROMIUM", str(tmp_path / "absent"))
    assert find_chromium() is None
    with pytest.raises(MitokitError, match="MITOKIT_CHROMIUM"):
        screenshot(fake, tmp_path / "out.png")
