"""The demo stage "detector, weak localiser and slide inference" on a tiny slide."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest

from mitokit.demo.core import DemoSize, _stage_slide
from mitokit.demo.localisation import (
    DETECTOR_KEY,
    DETECTOR_NAME,
    FULL_SETTINGS,
    LOCALISER_KEY,
    LOCALISER_NAME,
    QUICK_SETTINGS,
    LocalisationSettings,
    settings_for,
    stage_localisation,
)
from mitokit.experiments.synthetic_studies import torch_threads
from mitokit.report import HtmlReport

TINY_SLIDE = DemoSize(patches=10, tiles=1, tile_size=256, slide=(1024, 768), quick=True)
TINY = LocalisationSettings(
    det_images=3,
    det_epochs=1,
    det_epoch_length=4,
    wss_tiles=16,
    wss_epochs=1,
    det_image_size=250,
    det_batch_size=2,
    proposals=50,
    crop=256,
)


class _Tables(HTMLParser):
    """Rows (lists of cell texts) of every table in an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = HtmlReport("t", root=out)
    ctx: dict = {}
    messages: list[str] = []
    with torch_threads(1):
        _stage_slide(out, report, size=TINY_SLIDE, seed=0, ctx=ctx)
        result = stage_localisation(
            out,
            report,
            size=TINY_SLIDE,
            seed=0,
            real_dir=None,
            say=messages.append,
            ctx=ctx,
            settings=TINY,
        )
    parser = _Tables()
    parser.feed("".join(report.sections[-1].parts))
    return out, report, ctx, result, parser.tables, messages


def test_settings_follow_the_demo_size():
    assert settings_for(True) is QUICK_SETTINGS and settings_for(False) is FULL_SETTINGS
    assert QUICK_SETTINGS.det_epochs * QUICK_SETTINGS.det_epoch_length < (
        FULL_SETTINGS.det_epochs * FULL_SETTINGS.det_epoch_length
    )


@pytest.mark.parametrize("key", [DETECTOR_KEY, LOCALISER_KEY])
def test_each_model_writes_the_slide_files_of_mitokit_detect(stage, key):
    out, _, ctx, result, _, _ = stage
    folder = out / "localisation" / "slides" / key
    assert (folder / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (folder / "detections.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["mitotic_count"] == len(rows) == result["models"][key]["count"]
    assert summary["hotspot"]["count"] <= summary["mitotic_count"]
    assert summary["mitotic_count_per_mm2"] == pytest.approx(
        len(rows) / summary["tissue_area_mm2"], rel=1e-4
    )
    geo = json.loads((folder / "detections.geojson").read_text())
    assert len(geo["features"]) == len(rows)
    # every written detection scores at least the model's operating threshold
    threshold = result["models"][key]["threshold"]
    assert all(float(r["score"]) >= threshold - 1e-6 for r in rows)
    assert summary["threshold"] == pytest.approx(threshold)
    assert (ctx[key] / "config.json").is_file()


def test_report_has_a_score_row_per_model_within_unit_range(stage):
    _, report, _, result, tables, _ = stage
    assert report.sections[-1].title.startswith("Detector, weak localiser")
    scores, counts = tables[0], tables[1]
    assert [r[0] for r in scores[1:3]] == [DETECTOR_NAME, LOCALISER_NAME]
    for row in scores[1:3]:
        values = [float(v) for v in row[1:]]
        assert len(values) == 7 and all(0.0 <= v <= 1.0 for v in values), row
    # the labels' ceiling: an observer who knows every m, against the raters' consensus
    ceiling = scores[3]
    assert ceiling[0].endswith("(ceiling)") and float(ceiling[1]) == 0.5
    p, r, f1 = (result["ceiling"][k] for k in ("precision", "recall", "f1"))
    assert [float(v) for v in ceiling[2:5]] == pytest.approx([p, r, f1], abs=1e-3)
    assert 0.6 < f1 < 1.0 and f1 == pytest.approx(2 * p * r / (p + r))
    for row, key in zip(counts[1:], (DETECTOR_KEY, LOCALISER_KEY), strict=True):
        assert int(row[1]) == result["models"][key]["count"]
        assert int(row[4]) == result["truth"]["consensus"]
    for key in (DETECTOR_KEY, LOCALISER_KEY):
        m = result["models"][key]
        assert m["consensus"]["best_f1"] >= m["consensus"]["f1"] - 1e-9


def test_report_images_and_result_file_exist(stage):
    out, report, _, result, _, messages = stage
    srcs = [p.split('src="')[1].split('"')[0] for p in report.sections[-1].parts if "<img" in p]
    assert len(srcs) == 4 and all((out / s).is_file() for s in srcs)
    saved = json.loads((out / "localisation" / "result.json").read_text())
    assert saved["models"][DETECTOR_KEY]["count"] == result["models"][DETECTOR_KEY]["count"]
    assert saved["truth"]["latent"] >= 0 and any("detector" in m for m in messages)
