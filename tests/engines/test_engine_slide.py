"""Whole-slide inference (``mitokit.engines.slide``) and ``mitokit detect``.

Slides are small pyramidal TIFFs drawn here: a pink tissue block on white glass with dark dots
at known places. They are read at 2 um/px so that the 10-HPF hotspot (889 x 667 px at that
resolution) fits in a small slide. The models are small deterministic predictors defined here
(a dark-blob finder, a fixed-point reporter) and one real tile classifier saved by the model IO.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from mitokit.cli import cli
from mitokit.data.tissue import TissueMask
from mitokit.engines.slide import SlidePredictor, find_slides, shard
from mitokit.engines.slide_stream import (
    ReadGeometry,
    merge_points,
    plan_tiles,
    read_geometry,
)
from mitokit.errors import MitokitError
from mitokit.io.slides import open_slide
from mitokit.io.tiffwrite import write_pyramidal_tiff
from mitokit.metrics.detection import match_points
from mitokit.metrics.hotspot import find_hotspot, hotspot_size_px
from mitokit.models.predictors import TilePrediction

MPP = 2.0
TILE = 128
PINK = (230, 150, 200)
DARK = (30, 10, 60)  # grey 0.13: score 0.87
FAINT = (110, 90, 140)  # grey 0.44: score 0.56, seen only by a finder with a lighter cut


# ------------------------------------------------------------------------------ predictors


class BlobPredictor:
    """Finds dark blobs: one point per connected component darker than 0.35, at its centroid.

    The score is ``1 - darkest grey`` of the blob.
    """

    task = "detector"
    tile_size = TILE
    mpp = None
    device = torch.device("cpu")

    def __init__(self, *, cut: float = 0.35, mpp: float | None = None, tile_size: int = TILE):
        self.cut = cut
        self.mpp = mpp
        self.tile_size = tile_size
        self.calls = 0
        self.shapes: set[tuple[int, ...]] = set()

    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        self.calls += 1
        self.shapes.add(tuple(batch.shape[1:]))
        self.channels_last = batch.is_contiguous(memory_format=torch.channels_last)
        out = []
        for im in batch.mean(1).numpy():
            dark = im < self.cut
            labels, n = ndimage.label(dark)
            if n == 0:
                out.append(TilePrediction())
                continue
            idx = np.arange(1, n + 1)
            com = np.asarray(ndimage.center_of_mass(dark, labels, idx)).reshape(-1, 2)
            low = np.asarray(ndimage.minimum(im, labels, idx))
            pts = np.stack([com[:, 1] + 0.5, com[:, 0] + 0.5, 1.0 - low], axis=1)
            out.append(TilePrediction(points=pts, tile_score=float(pts[:, 2].max())))
        return out


class FixedPredictor:
    """Reports known level-0 objects in every tile that holds them, each tile moving them 0.6 px
    towards its own centre, as two tiles of a real model place a figure a little differently.

    The tile's origin is read back from its top-left pixel, where the test slide encodes the
    position of every 16-pixel block (all tile origins are multiples of 16 there).
    """

    task = "detector"
    tile_size = TILE
    mpp = None
    device = torch.device("cpu")

    def __init__(self, objects: np.ndarray, jitter: float):
        self.objects = objects
        self.jitter = jitter

    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        out = []
        for tile in batch.numpy():
            code = np.round(tile[:2, 0, 0] * 255).astype(int)
            rel = self.objects - code * 16
            rel = rel[(rel >= 2).all(1) & (rel < TILE - 2).all(1)]
            pts = rel + self.jitter * np.sign(TILE / 2 - rel)
            scores = np.full((len(pts), 1), 0.9)
            out.append(TilePrediction(points=np.hstack([pts, scores]), tile_score=0.9))
        return out


# --------------------------------------------------------------------------------- slides


def draw_slide(
    path: Path,
    size: tuple[int, int],
    dots: np.ndarray,
    *,
    faint: np.ndarray | None = None,
    tissue: tuple[int, int, int, int] | None = None,
    mpp: float | None = MPP,
) -> Path:
    """A slide with a pink tissue box and dark dots of radius 4 at ``dots`` (level-0 x, y)."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x1, y1, x2, y2 = tissue if tissue is not None else (40, 40, w - 40, h - 40)
    img[y1:y2, x1:x2] = PINK
    for colour, where in ((DARK, dots), (FAINT, faint)):
        if where is None:
            continue
        for x, y in np.asarray(where, dtype=float).reshape(-1, 2):
            r0, c0 = int(y) - 6, int(x) - 6
            yy, xx = np.mgrid[r0 : r0 + 13, c0 : c0 + 13]
            disk = (xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= 16
            img[yy[disk], xx[disk]] = colour
    if mpp is None:
        Image.fromarray(img).save(path)  # PNG without resolution: no mpp
        return path
    return write_pyramidal_tiff(path, img, mpp=mpp, tile_size=128, compression="deflate")


def spaced_dots(rng, n, box, min_dist=20.0, taken=()):
    pts = list(taken)
    out = []
    x1, y1, x2, y2 = box
    while len(out) < n:
        p = rng.uniform((x1, y1), (x2, y2))
        if all((p[0] - a) ** 2 + (p[1] - b) ** 2 >= min_dist**2 for a, b in pts):
            pts.append(tuple(p))
            out.append(p)
    return np.array(out)


def boundaries(size, tile=TILE, overlap=16):
    """Level-0 x and y of the core boundaries of the engine's grid (model mpp None)."""
    g = ReadGeometry(0, 1.0, tile, tile, 1.0)
    plan = plan_tiles(size, g, overlap=overlap, mask=None)
    bx = (plan.xs[1:] + plan.xs[:-1] + tile) / 2
    by = (plan.ys[1:] + plan.ys[:-1] + tile) / 2
    return bx, by


@pytest.fixture(scope="module")
def border_slide(tmp_path_factory):
    """1200 x 900 px: dots exactly on core boundaries and tile edges, plus random ones."""
    rng = np.random.default_rng(1)
    size = (1200, 900)
    bx, by = boundaries(size)
    on_lines = []
    for x in bx[1:-1]:
        on_lines.append((x, rng.uniform(80, 820)))
    for y in by[1:-1]:
        on_lines.append((rng.uniform(80, 1120), y))
    on_lines.append((bx[2], by[2]))  # a corner shared by four tiles
    on_lines.append((bx[3] + 7.5, by[4] - 7.5))  # near the tile edges inside the overlap
    fixed = [p for p in on_lines if 60 < p[0] < 1140 and 60 < p[1] < 840]
    dots = np.vstack([fixed, spaced_dots(rng, 60, (60, 60, 1140, 840), taken=fixed)])
    path = draw_slide(tmp_path_factory.mktemp("border") / "border.tif", size, dots)
    return path, dots, np.array(fixed)


@pytest.fixture(scope="module")
def cluster_slide(tmp_path_factory):
    """2400 x 1800 px: sparse dots plus a dense cluster of 25 near (1900, 500)."""
    rng = np.random.default_rng(2)
    cluster = spaced_dots(rng, 25, (1800, 400, 2050, 650), min_dist=18)
    sparse = spaced_dots(rng, 30, (60, 60, 2340, 1740), min_dist=60, taken=cluster)
    dots = np.vstack([cluster, sparse])
    path = draw_slide(tmp_path_factory.mktemp("cluster") / "cluster.tif", (2400, 1800), dots)
    return path, dots, cluster


def small_slide(folder: Path, name: str, seed: int, n: int = 6) -> tuple[Path, np.ndarray]:
    dots = spaced_dots(np.random.default_rng(seed), n, (60, 60, 340, 240))
    return draw_slide(folder / name, (400, 300), dots), dots


# ---------------------------------------------------------------------- counting and place


def test_each_figure_counted_once_at_its_place(border_slide):
    path, dots, on_lines = border_slide
    result = SlidePredictor(BlobPredictor(), batch_size=8, workers=2, progress=False).predict_slide(
        path
    )
    assert len(result.points) == len(dots)
    match = match_points(result.points[:, :2], dots, radius_px=1.5)
    assert len(match.pairs) == len(dots)  # every dot found within 1.5 px, one-to-one
    d = np.hypot(*(result.points[match.pairs[:, 0], :2] - dots[match.pairs[:, 1]]).T)
    assert d.max() < 1.0
    assert result.kind == "points" and result.mitotic_count == len(dots)
    # the border dots do lie in two or more tiles: the test exercises the overlap
    boxes = result.tile_boxes
    inside = [
        int(((boxes[:, 0] <= x) & (x < boxes[:, 2]) & (boxes[:, 1] <= y) & (y < boxes[:, 3])).sum())
        for x, y in on_lines
    ]
    assert min(inside) >= 2 and max(inside) == 4


def test_cross_tile_duplicates_are_merged(tmp_path):
    # Objects on core boundaries; each tile reports them 0.6 px off towards its own centre, so
    # both copies land in their own tile's core and only the merge can remove one.
    size = (128 + 4 * 112, 128 + 3 * 112)  # every tile origin a multiple of 112 = 7 x 16
    bx, by = boundaries(size)
    objects = np.array([[bx[1], 200.0], [300.0, by[1]], [bx[2], by[2]], [bx[0] + 3, by[0] - 3]])
    img = np.full((size[1], size[0], 3), 200, np.uint8)
    img[20:-20, 20:-20] = PINK
    for y in range(0, size[1], 16):
        for x in range(0, size[0], 16):
            img[y, x, :2] = (x // 16, y // 16)
    path = write_pyramidal_tiff(tmp_path / "fixed.tif", img, mpp=MPP, compression="deflate")
    kept = {}
    for radius in (0.0, 7.5):
        engine = SlidePredictor(
            FixedPredictor(objects, jitter=0.6), merge_radius_um=radius, workers=1, progress=False
        )
        kept[radius] = engine.predict_slide(path).points
    assert len(kept[0.0]) > len(objects)  # the core rule alone keeps the shifted twins
    assert len(kept[7.5]) == len(objects)
    assert len(match_points(kept[7.5][:, :2], objects, radius_px=1.0).pairs) == len(objects)


def test_merge_keeps_points_of_one_tile():
    pts = np.array([[0.0, 0, 0.9], [2.0, 0, 0.8], [3.0, 0, 0.7], [50.0, 0, 0.5]])
    tiles = np.array([0, 0, 1, 1])
    kept = merge_points(pts, tiles, radius=5.0)
    # 0 and 1 are the same tile's (both stay); 2 is another tile's twin of 0 (suppressed)
    assert kept.tolist() == [0, 1, 3]


def test_threshold_setting(tmp_path):
    rng = np.random.default_rng(3)
    dark = spaced_dots(rng, 5, (60, 60, 540, 390))
    faint = spaced_dots(rng, 4, (60, 60, 540, 390), taken=dark)
    path = draw_slide(tmp_path / "t.tif", (600, 450), dark, faint=faint)
    pred = BlobPredictor(cut=0.6)  # sees both kinds: dark ~0.88, faint ~0.56
    default = SlidePredictor(pred, progress=False).predict_slide(path)
    assert default.threshold == 0.5 and len(default.points) == 9
    strict = SlidePredictor(pred, threshold=0.7, progress=False).predict_slide(path)
    assert len(strict.points) == 5
    pred.threshold = 0.8  # a model's own threshold is the default
    assert SlidePredictor(pred, progress=False).threshold == 0.8
    with pytest.raises(MitokitError, match="threshold"):
        SlidePredictor(pred, threshold=1.5)


def test_points_on_glass_are_dropped(tmp_path):
    tissue = spaced_dots(np.random.default_rng(6), 3, (60, 60, 280, 240))
    glass = np.array([[360.0, 150.0], [200.0, 285.0]])  # 60 and 25 px (120, 50 um) off tissue
    path = draw_slide(
        tmp_path / "g.tif", (400, 300), np.vstack([tissue, glass]), tissue=(40, 40, 300, 260)
    )
    default = SlidePredictor(BlobPredictor(), progress=False).predict_slide(path)
    assert len(match_points(default.points[:, :2], tissue, radius_px=1.5).pairs) == 3
    assert len(default.points) == 3
    everything = SlidePredictor(BlobPredictor(), tissue_margin_um=None, progress=False)
    assert len(everything.predict_slide(path).points) == 5


# ------------------------------------------------------------------------------- hotspot


def test_hotspot_finds_the_cluster_with_10_hpf_area(cluster_slide):
    path, dots, cluster = cluster_slide
    result = SlidePredictor(BlobPredictor(), batch_size=16, progress=False).predict_slide(path)
    assert len(result.points) == len(dots)
    x1, y1, x2, y2 = result.hotspot.box
    assert (x2 - x1) * (y2 - y1) * MPP**2 == pytest.approx(2.37e6, rel=1e-9)
    assert (x2 - x1) / (y2 - y1) == pytest.approx(4 / 3, rel=1e-9)
    assert result.hotspot.area_mm2 == pytest.approx(2.37, rel=1e-9)
    inside = (
        (cluster[:, 0] >= x1) & (cluster[:, 0] < x2) & (cluster[:, 1] >= y1) & (cluster[:, 1] < y2)
    )
    assert inside.all()
    pts = result.points
    exact = ((pts[:, 0] >= x1) & (pts[:, 0] < x2) & (pts[:, 1] >= y1) & (pts[:, 1] < y2)).sum()
    assert result.hotspot.count == exact >= len(cluster)
    assert result.hotspot.tissue_fraction > 0.9


def test_hotspot_stays_on_tissue_and_sizes():
    w, h = hotspot_size_px(0.25)
    assert w * h * 0.25**2 == pytest.approx(2.37e6) and w / h == pytest.approx(4 / 3)
    # tissue only on the left half; no points at all -> the window sits on the tissue
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True
    tissue = TissueMask(mask, (20.0, 20.0))
    spot = find_hotspot(np.zeros((0, 2)), slide_size=(4000, 2000), mpp=2.0, tissue=tissue)
    assert spot.box[2] <= 2000 + 1e-6 and spot.tissue_fraction == pytest.approx(1.0)
    # points on glass do not pull the window off the tissue
    glass = np.column_stack([np.full(50, 3500.0), np.linspace(100, 1900, 50)])
    spot = find_hotspot(glass, slide_size=(4000, 2000), mpp=2.0, tissue=tissue)
    assert spot.tissue_fraction >= 0.5


# ------------------------------------------------------------------------ outputs, runs


def test_run_writes_outputs_and_resumes(tmp_path, border_slide):
    path, dots, _ = border_slide
    pred = BlobPredictor()
    engine = SlidePredictor(pred, progress=False)
    out = tmp_path / "out"
    summary = engine.run([path], out)
    assert [s.status for s in summary.slides] == ["done"]
    folder = out / path.stem
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        ["detections.csv", "detections.geojson", "heatmap.png", "summary.json", "tiles.csv"]
    )
    s = json.loads((folder / "summary.json").read_text())
    assert s["mitotic_count"] == len(dots)
    assert s["tissue_area_mm2"] == pytest.approx(1120 * 820 * MPP**2 / 1e6, rel=0.05)
    assert s["mitotic_count_per_mm2"] == pytest.approx(len(dots) / s["tissue_area_mm2"], rel=1e-4)
    assert s["hotspot"]["area_mm2"] == pytest.approx(2.37)
    assert len(s["hotspot"]["box"]) == 4
    rows = (folder / "detections.csv").read_text().splitlines()
    assert rows[0] == "x,y,score,x_um,y_um" and len(rows) == len(dots) + 1
    x, y, _, x_um, y_um = (float(v) for v in rows[1].split(","))
    assert (x_um, y_um) == pytest.approx((x * MPP, y * MPP), abs=0.01)
    geo = json.loads((folder / "detections.geojson").read_text())
    feature = geo["features"][0]
    assert feature["geometry"]["type"] == "Point"
    assert feature["properties"]["classification"]["name"] == "mitosis"
    assert feature["properties"]["objectType"] == "detection"
    assert 0.5 <= feature["properties"]["measurements"]["score"] <= 1.0
    heat = np.asarray(Image.open(folder / "heatmap.png"))
    assert heat.ndim == 3 and max(heat.shape[:2]) <= 1024
    assert json.loads((out / "run_summary.json").read_text())["done"] == 1

    calls = pred.calls
    again = engine.run([path], out)
    assert [s.status for s in again.slides] == ["skipped"] and pred.calls == calls
    redo = engine.run([path], out, overwrite=True)
    assert [s.status for s in redo.slides] == ["done"] and pred.calls > calls


def test_a_crash_leaves_no_slide_folder(tmp_path, monkeypatch, border_slide):
    path, _, _ = border_slide
    import mitokit.report.heatmap as heatmap_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(heatmap_module, "save_png", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        SlidePredictor(BlobPredictor(), progress=False).run([path], tmp_path)
    assert not (tmp_path / path.stem).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_slide_is_reported_and_skipped(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    small_slide(folder, "a.tif", 1)
    small_slide(folder, "c.tif", 2)
    (folder / "b.tif").write_bytes(b"II*\x00 this is not a slide")
    (folder / "notes.txt").write_text("not a slide")
    lines: list[str] = []
    engine = SlidePredictor(BlobPredictor(), progress=False, log=lines.append)
    summary = engine.run(folder, tmp_path / "out")
    status = {Path(s.slide).name: s.status for s in summary.slides}
    assert status == {"a.tif": "done", "b.tif": "failed", "c.tif": "done"}
    assert len(lines) == 1 and "b.tif" in lines[0] and "\n" not in lines[0]
    assert not (tmp_path / "out" / "b").exists()
    saved = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert saved["failed"] == 1 and "b.tif" in saved["slides"][1]["error"]


def test_read_error_half_way_fails_only_that_slide(tmp_path, monkeypatch):
    import mitokit.engines.slide_stream as stream

    folder = tmp_path / "slides"
    folder.mkdir()
    small_slide(folder, "a.tif", 40)
    small_slide(folder, "b.tif", 41)
    real = stream._read_tile
    seen = {"n": 0}

    def flaky(slide, origin, g):
        seen["n"] += 1
        if "a.tif" in str(slide.path) and seen["n"] == 3:
            raise MitokitError(f"{slide.path}: cannot decode level 0 at (0, 0): broken tile")
        return real(slide, origin, g)

    monkeypatch.setattr(stream, "_read_tile", flaky)
    lines: list[str] = []
    engine = SlidePredictor(
        BlobPredictor(), batch_size=2, workers=2, progress=False, log=lines.append
    )
    summary = engine.run(folder, tmp_path / "out")
    assert [s.status for s in summary.slides] == ["failed", "done"]
    assert "broken tile" in lines[0] and len(lines) == 1
    assert (
        not (tmp_path / "out" / "a").exists()
        and (tmp_path / "out" / "b" / "summary.json").is_file()
    )


def test_missing_mpp_and_empty_tissue(tmp_path):
    dots = spaced_dots(np.random.default_rng(4), 4, (60, 60, 340, 240))
    png = draw_slide(tmp_path / "nompp.png", (400, 300), dots, mpp=None)
    engine = SlidePredictor(BlobPredictor(), progress=False)
    with pytest.raises(MitokitError, match=r"nompp\.png: no microns-per-pixel.*--mpp"):
        engine.predict_slide(png)
    assert len(engine.predict_slide(png, mpp=MPP).points) == 4
    blank = write_pyramidal_tiff(
        tmp_path / "blank.tif", np.full((300, 400, 3), 255, np.uint8), mpp=MPP
    )
    with pytest.raises(MitokitError, match=r"no tissue found in .*blank\.tif"):
        engine.predict_slide(blank)


def test_tile_size_must_fit_the_model():
    pred = BlobPredictor()
    assert SlidePredictor(pred).tile_size == TILE
    with pytest.raises(MitokitError, match="tile size 100 does not fit .* 128-pixel tiles"):
        SlidePredictor(pred, tile_size=100)
    pred.tile_multiple = 32
    assert SlidePredictor(pred, tile_size=256).tile_size == 256
    with pytest.raises(MitokitError, match="multiple of 32"):
        SlidePredictor(pred, tile_size=100)


def test_reads_at_the_model_resolution(border_slide):
    path, dots, _ = border_slide
    with open_slide(path) as s:
        # model at 4 um/px on a 2 um/px slide: level 1 (downsample 2) read as is
        g = read_geometry(s, tile_size=TILE, model_mpp=4.0, slide_mpp=MPP)
        assert (g.level, g.read_size, g.scale, g.resize) == (1, TILE, 2.0, False)
        # 3 um/px: level 0, 192 px resized to 128
        g = read_geometry(s, tile_size=TILE, model_mpp=3.0, slide_mpp=MPP)
        assert (g.level, g.read_size, g.scale) == (0, 192, 1.5)
    pred = BlobPredictor(mpp=3.0, cut=0.45)
    result = SlidePredictor(pred, progress=False).predict_slide(path)
    assert pred.shapes == {(3, TILE, TILE)}
    assert pred.channels_last  # the default on CPU: the layout the tiles are read in
    SlidePredictor(pred, channels_last=False, progress=False).predict_slide(path)
    assert not pred.channels_last
    assert result.settings["reading"]["level0_px_per_model_px"] == 1.5
    match = match_points(result.points[:, :2], dots, radius_px=2.0)
    assert len(match.pairs) == len(dots) == len(result.points)


def test_tile_classifier_model(tmp_path):
    from mitokit.engines.task import get_task
    from mitokit.models.io import save_model
    from mitokit.models.predictors import load_predictor

    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    model = get_task("tile_classifier").build_model(model_cfg)
    folder = save_model(
        model, tmp_path / "bc", task="tile_classifier", model_cfg=model_cfg,
        extra={"data": {"tile_size": 64}},
    )  # fmt: skip
    predictor = load_predictor(folder)
    path, _ = small_slide(tmp_path, "s.tif", 5)
    summary = SlidePredictor(predictor, threshold=0.0, progress=False).run(path, tmp_path / "o")
    assert summary.done
    s = json.loads((tmp_path / "o" / "s" / "summary.json").read_text())
    assert s["kind"] == "tiles" and s["mitotic_count"] is None
    tiles = (tmp_path / "o" / "s" / "tiles.csv").read_text().splitlines()
    assert s["tiles"] == len(tiles) - 1 == s["positive_tiles"] > 0
    geo = json.loads((tmp_path / "o" / "s" / "detections.geojson").read_text())
    assert {f["geometry"]["type"] for f in geo["features"]} == {"Polygon"}


# ----------------------------------------------------------------------- inputs, sharding


def test_shards_are_disjoint_and_complete(tmp_path):
    items = list(range(11))
    parts = [shard(items, rank=r, world_size=3) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    with pytest.raises(MitokitError):
        shard(items, rank=3, world_size=3)

    folder = tmp_path / "slides"
    folder.mkdir()
    for k, name in enumerate(("a.tif", "b.tif", "c.tif")):
        small_slide(folder, name, 10 + k, n=2)
    done = []
    for rank in (0, 1):
        engine = SlidePredictor(BlobPredictor(), progress=False)
        summary = engine.run(folder, tmp_path / "out", rank=rank, world_size=2)
        assert summary.path.name == f"run_summary.rank{rank}.json"
        done.append({Path(s.slide).name for s in summary.done})
    assert done == [{"a.tif", "c.tif"}, {"b.tif"}]


def test_shard_from_torchrun_environment(tmp_path, monkeypatch):
    folder = tmp_path / "slides"
    folder.mkdir()
    for k, name in enumerate(("a.tif", "b.tif")):
        small_slide(folder, name, 20 + k, n=2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    summary = SlidePredictor(BlobPredictor(), progress=False).run(folder, tmp_path / "out")
    assert (summary.rank, summary.world_size, summary.total) == (1, 2, 2)
    assert [Path(s.slide).name for s in summary.slides] == ["b.tif"]


def test_find_slides(tmp_path):
    (tmp_path / "x.svs").write_bytes(b"")
    (tmp_path / ".x.tmp.tif").write_bytes(b"")
    (tmp_path / "y.txt").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.tif").write_bytes(b"")
    assert [p.name for p in find_slides(tmp_path)] == ["x.svs"]
    assert len(find_slides([tmp_path, tmp_path / "x.svs"])) == 1
    with pytest.raises(MitokitError, match="no such file"):
        find_slides([tmp_path / "missing.svs"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MitokitError, match="holds no slide"):
        find_slides(tmp_path / "empty")
    with pytest.raises(MitokitError, match="same name stem"):
        SlidePredictor(BlobPredictor(), progress=False).run(
            [tmp_path / "x.svs", tmp_path / "sub" / "x.tif"], tmp_path / "out"
        )


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def blob_model(monkeypatch, tmp_path):
    """``--model`` loads a BlobPredictor (the CLI's model loading is patched)."""
    import mitokit.models.predictors as predictors

    made: list[BlobPredictor] = []

    def fake_load(folder, *, device="cpu", backend="torch"):
        if not Path(folder).is_dir():
            raise MitokitError(f"{folder}: not a mitokit model folder (no config.json)")
        made.append(BlobPredictor())
        return made[-1]

    monkeypatch.setattr(predictors, "load_predictor", fake_load)
    model = tmp_path / "model"
    model.mkdir()
    return model


def test_cli_detect_json_and_failures(tmp_path, blob_model):
    folder = tmp_path / "slides"
    folder.mkdir()
    _, dots = small_slide(folder, "a.tif", 30, n=5)
    (folder / "bad.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    args = ["detect", str(folder), "--model", str(blob_model), "--out", str(out), "--json"]
    result = CliRunner().invoke(cli, [*args, "--workers", "2", "--batch-size", "4"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "bad.tif" in errors[0] and errors[0].startswith("mitokit: error:")
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"]) == (1, 1)
    assert json.loads((out / "a" / "summary.json").read_text())["mitotic_count"] == len(dots)
    (folder / "bad.tif").unlink()
    again = CliRunner().invoke(cli, args[:-1])
    assert again.exit_code == 0, again.output
    assert "0 done, 1 skipped" in again.stdout


def test_cli_detect_one_line_errors(tmp_path, blob_model):
    path, _ = small_slide(tmp_path, "a.tif", 31)
    base = ["detect", str(path), "--out", str(tmp_path / "out")]
    for extra, needle in (
        (["--model", str(blob_model), "--tile-size", "100"], "does not fit"),
        (["--model", str(tmp_path / "nope")], "not a mitokit model folder"),
        (["--model", str(blob_model), "--device", "cuda:7"], None),
    ):
        result = CliRunner().invoke(cli, base + extra)
        if needle is None and torch.cuda.is_available():
            continue
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert needle is None or needle in lines[0]
    png = draw_slide(tmp_path / "n.png", (400, 300), np.array([[100.0, 100.0]]), mpp=None)
    args = ["detect", str(png), "--model", str(blob_model), "--out", str(tmp_path / "o2")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "pass --mpp" in result.stderr
    result = CliRunner().invoke(cli, [*args, "--mpp", "2"])
    assert result.exit_code == 0, result.output
    assert "1 mitotic figures" in result.stdout


def test_evaluate_points_reads_detect_output(tmp_path, blob_model):
    from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations

    path, dots = small_slide(tmp_path, "a.tif", 32, n=5)
    out = tmp_path / "out"
    run = CliRunner().invoke(
        cli, ["detect", str(path), "--model", str(blob_model), "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    truth = AnnotationSet(
        [Annotation(f"t{k}", "a", point=(float(x), float(y))) for k, (x, y) in enumerate(dots[:4])],
        {"a": ImageInfo("a", mpp=MPP)},
    )  # the truth names the slide by its stem, as a centroid CSV would
    write_annotations(truth, tmp_path / "truth.csv")
    args = ["evaluate", "points", "--pred", str(out), "--truth", str(tmp_path / "truth.csv")]
    result = CliRunner().invoke(cli, [*args, "--sweep", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["tp"], report["fp"], report["fn"]) == (4, 1, 0)
    assert [r["image"] for r in report["per_image"]] == ["a"]
    at_best = report["sweep"]["at_best"]
    assert at_best["threshold"] == report["sweep"]["best_threshold"]
    assert at_best["per_image"][0]["image"] == "a"
    text = CliRunner().invoke(cli, [*args, "--sweep"])
    assert "per image at the best threshold" in text.stdout


def test_plan_covers_slide_with_partitioning_cores():
    g = ReadGeometry(0, 1.0, TILE, TILE, 1.0)
    plan = plan_tiles((1000, 700), g, overlap=16, mask=None)
    rng = np.random.default_rng(0)
    pts = rng.uniform((0, 0), (1000, 700), size=(2000, 2))
    owners = np.zeros(len(pts), int)
    for core in plan.cores:
        owners += (
            (pts[:, 0] >= core[0])
            & (pts[:, 0] < core[2])
            & (pts[:, 1] >= core[1])
            & (pts[:, 1] < core[3])
        )
    assert (owners == 1).all()
    assert plan.boxes[:, 2].max() == 1000 and plan.boxes[:, 3].max() == 700
    assert math.isinf(plan.cores[0, 0]) and math.isinf(plan.cores[-1, 3])
    with pytest.raises(MitokitError, match="overlap"):
        plan_tiles((1000, 700), g, overlap=TILE, mask=None)


def test_generated_slide_with_a_tile_classifier_at_half_resolution(tmp_path):
    from mitokit.data.synthetic.generate import write_synthetic_slide
    from mitokit.engines.task import get_task
    from mitokit.models.predictors import TileScorePredictor

    path = tmp_path / "synthetic.tif"
    write_synthetic_slide(path, size=(3000, 3000), seed=0)  # 0.25 um/px, JPEG pyramid
    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    cfg = {
        "task": "tile_classifier",
        "model": model_cfg,
        "extra": {"data": {"tile_size": 250, "mpp": 0.5}},
    }
    model = get_task("tile_classifier").build_model(model_cfg)
    predictor = TileScorePredictor(model, cfg, torch.device("cpu"))
    summary = SlidePredictor(predictor, progress=False).run(path, tmp_path / "out")
    assert summary.done
    s = json.loads((tmp_path / "out" / "synthetic" / "summary.json").read_text())
    assert s["reading"]["level"] == 1 and s["reading"]["read_size"] == 250
    assert 0 < s["tissue_area_mm2"] <= 3000 * 3000 * 0.25**2 / 1e6
    assert s["hotspot"]["area_mm2"] == pytest.approx(2.37)


def test_tifffile_reader_gives_the_openslide_reader_results(border_slide):
    path, dots, _ = border_slide
    results = {}
    for reader in ("auto", "slide"):
        engine = SlidePredictor(
            BlobPredictor(), batch_size=8, workers=2, reader=reader, progress=False
        )
        results[reader] = engine.predict_slide(path)
    fast, slow = results["auto"], results["slide"]
    assert fast.settings["reading"]["reader"] == "tifffile"
    assert slow.settings["reading"]["reader"] == "openslide"
    np.testing.assert_array_equal(fast.tile_scores, slow.tile_scores)

    def rows(points):  # the order of points of equal score follows the readers' timing
        return points[np.lexsort(points.T)]

    np.testing.assert_array_equal(rows(fast.points), rows(slow.points))
    assert len(fast.points) == len(dots)
    with pytest.raises(MitokitError, match="reader must be one of"):
        SlidePredictor(BlobPredictor(), reader="openslide")


def test_cli_detect_reader_option(tmp_path, blob_model):
    path, dots = small_slide(tmp_path, "a.tif", 32, n=5)
    out = tmp_path / "out"
    args = ["detect", str(path), "--model", str(blob_model), "--out", str(out)]
    seen = {}
    for reader in ("auto", "slide"):
        result = CliRunner().invoke(cli, [*args, "--reader", reader, "--overwrite"])
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "a" / "summary.json").read_text())
        seen[summary["reading"]["reader"]] = summary["mitotic_count"]
    assert seen == {"tifffile": len(dots), "openslide": len(dots)}
    bad = CliRunner().invoke(cli, [*args, "--reader", "fast"])
    assert bad.exit_code == 2 and "'fast' is not one of 'auto', 'slide'" in bad.output
