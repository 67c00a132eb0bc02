"""`--backend onnx | onnx-int8` of detect, predict and evaluate patches; `mitokit export`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime")

from mitokit.cli import cli  # noqa: E402
from mitokit.engines.task import get_task  # noqa: E402
from mitokit.models.checkpoint import save_model  # noqa: E402


def _model(folder: Path, task: str, cfg: dict, data: dict, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = get_task(task).build_model(cfg)
    return save_model(model, folder, task=task, model_cfg=cfg, extra={"data": data})


def _images(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def _run(args: list[str], code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def _tiles_csv(folder: Path) -> list[dict]:
    with open(folder / "tiles.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_detect_onnx_equals_torch(tmp_path: Path) -> None:
    from mitokit.data.synthetic.generate import write_synthetic_slide

    slide = tmp_path / "slide.tif"
    write_synthetic_slide(slide, size=(1200, 1200), seed=0)
    model = _model(
        tmp_path / "wss", "weak_localiser", {"aggregation": "max"}, {"input_size": 128, "mpp": 0.5}
    )
    outs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        result = _run(
            [
                "detect",
                slide,
                "--model",
                model,
                "--out",
                out,
                "--backend",
                backend,
                "--threshold",
                "0.3",
                "--json",
            ]
        )
        assert json.loads(result.output)["done"]
        outs[backend] = out / "slide"
    a, b = _tiles_csv(outs["torch"]), _tiles_csv(outs["onnx"])
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b, strict=True):
        assert [ra[k] for k in ("x1", "y1", "x2", "y2")] == [
            rb[k] for k in ("x1", "y1", "x2", "y2")
        ]
        assert abs(float(ra["score"]) - float(rb["score"])) < 1e-4
    sa = json.loads((outs["torch"] / "summary.json").read_text())
    sb = json.loads((outs["onnx"] / "summary.json").read_text())
    assert sb["model"]["backend"] == "onnx" and sa["model"]["backend"] == "torch"
    assert (model / "model.onnx").is_file()


def test_predict_and_evaluate_patches_onnx_equal_torch(tmp_path: Path) -> None:
    model = _model(tmp_path / "m", "patch_classifier", {"input_size": 32}, {})
    labels = tmp_path / "labels"
    _images(labels / "Atypical", 4, 40, seed=1)
    _images(labels / "Normal", 4, 40, seed=2)
    scores, aucs = {}, {}
    for backend in ("torch", "onnx"):
        out = _run(
            [
                "predict",
                "patches",
                labels,
                "--model",
                model,
                "--backend",
                backend,
                "--tta",
                "--json",
            ]
        )
        data = json.loads(out.output)
        assert data["backend"] == backend
        scores[backend] = np.array([r["score"] for r in data["rows"]])
        ev = _run(
            [
                "evaluate",
                "patches",
                "--model",
                model,
                "--labels",
                labels,
                "--positive",
                "Atypical",
                "--backend",
                backend,
                "--json",
            ]
        )
        aucs[backend] = json.loads(ev.output)["auc"]
    assert np.abs(scores["onnx"] - scores["torch"]).max() < 1e-4
    assert aucs["onnx"] == pytest.approx(aucs["torch"], abs=1e-9)


def test_export_int8_then_predict_tiles(tmp_path: Path) -> None:
    data = {"tile_size": 64, "stride": 32}
    model = _model(tmp_path / "m", "tile_classifier", {"input_size": None}, data)
    images = _images(tmp_path / "img", 2, 128)
    result = _run(["predict", "tiles", images, "--model", model, "--backend", "onnx-int8"], 2)
    assert "no int8 graph" in result.output and "mitokit export" in result.output
    result = _run(["export", model, "--int8"], 2)
    assert "--int8 needs --calibration" in result.output
    result = _run(["export", model, "--int8", "--calibration", images, "--tiles", "8", "--json"])
    written = json.loads(result.output)
    assert Path(written["graph"]).is_file() and Path(written["int8_graph"]).is_file()
    rows = {}
    for backend in ("torch", "onnx-int8"):
        out = _run(["predict", "tiles", images, "--model", model, "--backend", backend, "--json"])
        rows[backend] = np.array([r["score"] for r in json.loads(out.output)["rows"]])
    assert len(rows["torch"]) == len(rows["onnx-int8"]) > 0
    assert np.abs(rows["torch"] - rows["onnx-int8"]).max() < 0.05


def test_detector_refuses_onnx_in_one_line(tmp_path: Path) -> None:
    from mitokit.data.synthetic.generate import write_synthetic_slide

    cfg = {"arch": "resnet18", "trainable_layers": 2}
    model = _model(tmp_path / "det", "detector", cfg, {"mpp": 0.25})
    slide = tmp_path / "s.tif"
    write_synthetic_slide(slide, size=(600, 600), seed=0)
    result = _run(
        ["detect", slide, "--model", model, "--out", tmp_path / "o", "--backend", "onnx"], 2
    )
    line = result.output.strip()
    assert "\n" not in line and "'detector' model has no ONNX backend" in line
    assert str(model) in line
    result = _run(["export", model], 2)
    assert "has no ONNX backend" in result.output
