"""The ONNX Runtime backend: the same outputs as PyTorch, a cache that follows the weights, int8."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from mitokit.engines.task import get_task  # noqa: E402
from mitokit.errors import MitokitError  # noqa: E402
from mitokit.models.backend import (  # noqa: E402
    GRAPH,
    INT8_GRAPH,
    quantize_model,
    use_backend,
)
from mitokit.models.checkpoint import load_model, save_model  # noqa: E402

TOL = 1e-4


def _save(folder: Path, task: str, cfg: dict, tile: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = get_task(task).build_model(cfg)
    extra = {"data": {"tile_size": tile, "input_size": tile if task == "weak_localiser" else None}}
    return save_model(model, folder, task=task, model_cfg=cfg, extra=extra)


def _pair(folder: Path, backend: str = "onnx"):
    ref, cfg = load_model(folder, fold_bn=True)
    onnx, _ = load_model(folder, fold_bn=True)
    return ref, use_backend(onnx, folder, cfg, backend)


def _batch(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


SCORERS = [
    ("patch_classifier", {"input_size": 32}, 32),
    ("patch_classifier", {"input_size": 32}, 48),  # read bigger: resized in torch first
    ("tile_classifier", {"input_size": None}, 64),
    ("tile_regressor", {"input_size": None}, 64),
]


@pytest.mark.parametrize(("task", "cfg", "tile"), SCORERS)
def test_scores_equal_torch(tmp_path: Path, task: str, cfg: dict, tile: int) -> None:
    folder = _save(tmp_path / "m", task, cfg, tile)
    ref, onnx = _pair(folder)
    for n in (1, 5):  # the batch axis is dynamic
        x = _batch(n, tile, tile, seed=n)
        with torch.no_grad():
            want = ref.scores(x)
        got = onnx.scores(x)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) < TOL
    # channels-last input (what the slide engine hands PyTorch) reads the same
    x = _batch(3, tile, tile).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert float((onnx.scores(x) - ref.scores(x)).abs().max()) < TOL
    assert onnx.mitokit_backend == "onnx" and (folder / GRAPH).is_file()


@pytest.mark.parametrize("aggregation", ["max", "attention"])
def test_weak_localiser_maps_equal_torch(tmp_path: Path, aggregation: str) -> None:
    folder = _save(tmp_path / "m", "weak_localiser", {"aggregation": aggregation}, 64)
    ref, onnx = _pair(folder)
    for shape in ((4, 64, 64), (2, 96, 80)):  # fully convolutional: any multiple of 16
        x = _batch(*[shape[0], *shape[1:]])
        with torch.no_grad():
            want = ref.localise(x)
        got = onnx.localise(x)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape
            assert float((a - b).abs().max()) < TOL


def test_predictors_and_ensembles_equal_torch(tmp_path: Path) -> None:
    from mitokit.models.classifier import load_ensemble, predict_images
    from mitokit.models.predictors import load_predictor

    wss = _save(tmp_path / "wss", "weak_localiser", {"aggregation": "max"}, 64)
    torch_p = load_predictor(wss)
    onnx_p = load_predictor(wss, backend="onnx", threads=1)
    assert (torch_p.backend, onnx_p.backend) == ("torch", "onnx")
    x = _batch(3, 64, 64)
    for a, b in zip(torch_p.predict(x), onnx_p.predict(x), strict=True):
        assert abs(a.tile_score - b.tile_score) < TOL
        assert np.abs(a.heatmap - b.heatmap).max() < TOL
    seeds = [
        _save(tmp_path / "ens" / f"seed{i}", "patch_classifier", {"input_size": 32}, 32, i)
        for i in range(2)
    ]
    images = [
        (np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8) for i in range(6)
    ]
    ens_t, _ = load_ensemble([tmp_path / "ens"])
    ens_o, _ = load_ensemble([tmp_path / "ens"], backend="onnx")
    want = predict_images(ens_t, images, tta=True)
    got = predict_images(ens_o, images, tta=True)
    assert np.abs(got - want).max() < TOL
    assert all((s / GRAPH).is_file() for s in seeds)


def test_cached_graph_reused_and_rebuilt_when_weights_change(tmp_path: Path) -> None:
    folder = _save(tmp_path / "m", "tile_classifier", {"input_size": None}, 32)
    _pair(folder)
    graph = folder / GRAPH
    first = graph.stat().st_mtime_ns
    os.utime(graph, ns=(first - 10**9, first - 10**9))
    _pair(folder)
    assert graph.stat().st_mtime_ns == first - 10**9  # reused: not written again
    _save(folder, "tile_classifier", {"input_size": None}, 32, seed=7)  # new weights
    ref, onnx = _pair(folder)
    assert graph.stat().st_mtime_ns != first - 10**9
    x = _batch(2, 32, 32)
    with torch.no_grad():
        assert float((onnx.scores(x) - ref.scores(x)).abs().max()) < TOL


def test_unwritable_folder_exports_to_a_temporary_graph(tmp_path: Path, monkeypatch) -> None:
    from mitokit.io.atomic import OutputError
    from mitokit.models.backend import graph as graph_module

    folder = _save(tmp_path / "m", "tile_classifier", {"input_size": None}, 32)
    real = graph_module.export_graph

    def refuse_in_folder(model, method, example, path, metadata=None):
        if Path(path).parent == folder:  # as a read-only folder or a full disk would
            raise OutputError(path, "cannot write (Read-only file system)")
        return real(model, method, example, path, metadata)

    monkeypatch.setattr(graph_module, "export_graph", refuse_in_folder)
    ref, onnx = _pair(folder)
    assert not (folder / GRAPH).exists()
    assert onnx.mitokit_graph.is_file() and onnx.mitokit_graph.parent != folder
    x = _batch(2, 32, 32)
    with torch.no_grad():
        assert float((onnx.scores(x) - ref.scores(x)).abs().max()) < TOL


def test_refusals(tmp_path: Path) -> None:
    from mitokit.models.predictors import load_predictor

    folder = _save(tmp_path / "m", "tile_classifier", {"input_size": None}, 32)
    model, cfg = load_model(folder)
    with pytest.raises(MitokitError, match="unknown backend 'tensorrt'"):
        use_backend(model, folder, cfg, "tensorrt")
    with pytest.raises(MitokitError, match=r"no int8 graph .*mitokit export"):
        use_backend(model, folder, cfg, "onnx-int8")
    det = tmp_path / "det"
    torch.manual_seed(0)
    det_cfg = {"arch": "resnet18", "trainable_layers": 2}
    save_model(get_task("detector").build_model(det_cfg), det, task="detector", model_cfg=det_cfg)
    with pytest.raises(MitokitError, match="'detector' model has no ONNX backend"):
        load_predictor(det, backend="onnx")


def _calibration_images(folder: Path, n: int = 4, size: int = 80) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def test_int8_graph_close_to_float_and_tied_to_weights(tmp_path: Path) -> None:
    folder = _save(tmp_path / "m", "tile_classifier", {"input_size": None}, 64)
    images = _calibration_images(tmp_path / "cal")
    path = quantize_model(folder, [images], tiles=16)
    assert path == folder / INT8_GRAPH
    ref, q = _pair(folder, "onnx-int8")
    x = _batch(8, 64, 64)
    with torch.no_grad():
        want = ref.scores(x)
    got = q.scores(x)
    # int8 is an approximation: close, not equal (its accuracy cost is measured in benchmarks/)
    assert float((got - want).abs().max()) < 0.05
    _save(folder, "tile_classifier", {"input_size": None}, 64, seed=3)
    model, cfg = load_model(folder)
    with pytest.raises(MitokitError, match="made for other weights"):
        use_backend(model, folder, cfg, "onnx-int8")


def test_calibration_refuses_missing_inputs(tmp_path: Path) -> None:
    folder = _save(tmp_path / "m", "tile_classifier", {"input_size": None}, 32)
    with pytest.raises(MitokitError, match="file not found"):
        quantize_model(folder, [tmp_path / "nothing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MitokitError, match="folder holds no"):
        quantize_model(folder, [tmp_path / "empty"])
    assert not (folder / INT8_GRAPH).exists()
