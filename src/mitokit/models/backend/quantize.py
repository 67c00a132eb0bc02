"""Static int8 quantisation of a model's graph, calibrated on tiles of its training data.

:func:`quantize_model` writes ``<model folder>/model.int8.onnx``: the float graph
(:func:`~mitokit.models.backend.graph.cached_graph`) with ONNX Runtime's static quantisation
(QDQ format, int8 weights per output channel, uint8 activations whose ranges are the minimum and
maximum seen on the calibration tiles). The calibration tiles are windows of the model's input
size cut at seeded random places from the images (or slides, read at level 0) the user names:
they should be the kind of tiles the model was trained on. What the quantisation costs in
accuracy is measured, not assumed: ``benchmarks/slide_inference.py --int8`` and the slide
inference page of the docs.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.errors import input_error
from mitokit.models.backend.graph import (
    INT8_GRAPH,
    cached_graph,
    graph_key,
    graph_method,
    require_onnxruntime,
)
from mitokit.models.backend.runtime import example_input

log = logging.getLogger("mitokit")


def calibration_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Image or slide files from files and folders (a folder: the images directly in it).

    Raises:
        MitokitError: A missing path, or a folder without images.
    """
    from mitokit.models.tile_source import find_images

    files = find_images(paths)
    if not files:
        raise input_error(None, "no calibration images given")
    return files


def calibration_tiles(
    files: Sequence[Path], size: int | None, *, count: int = 256, seed: int = 0
) -> np.ndarray:
    """``count`` windows of ``size`` px as float32 ``Nx3xHxW`` in [0, 1], spread over ``files``.

    Each file gives about ``count / len(files)`` windows at seeded random places (an image
    smaller than the window is padded white, as :func:`~mitokit.models.classifier.predict_tiles`
    pads). ``size`` None takes each image whole (patches), padded or cut to the first one's size.
    """
    from mitokit.io.slides import open_slide

    rng = np.random.default_rng(seed)
    per_file = max(1, math.ceil(count / len(files)))
    tiles: list[np.ndarray] = []
    for path in files:
        if len(tiles) == count:
            break
        with open_slide(path) as slide:
            w, h = slide.dimensions
            side = (
                (size, size)
                if size
                else (tiles[0].shape[1], tiles[0].shape[0])
                if tiles
                else (w, h)
            )
            for _ in range(min(per_file, count - len(tiles))):
                x = (
                    int(rng.integers(0, max(1, w - side[0] + 1)))
                    if size
                    else max(0, (w - side[0]) // 2)
                )
                y = (
                    int(rng.integers(0, max(1, h - side[1] + 1)))
                    if size
                    else max(0, (h - side[1]) // 2)
                )
                region = np.asarray(slide.read_region((x, y), 0, side))[:, :, :3]
                tile = np.full((side[1], side[0], 3), 255, np.uint8)
                tile[: region.shape[0], : region.shape[1]] = region[: side[1], : side[0]]
                tiles.append(tile)
    batch = np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return np.ascontiguousarray(batch)


class _Reader:
    """ONNX Runtime's calibration data reader over batches of tiles."""

    def __init__(self, tiles: np.ndarray, batch_size: int = 16) -> None:
        self._batches = iter(
            [{"x": tiles[i : i + batch_size]} for i in range(0, len(tiles), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_model(
    folder: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    tiles: int = 256,
    seed: int = 0,
) -> Path:
    """Write ``<folder>/model.int8.onnx``, calibrated on ``tiles`` windows of ``images``.

    Args:
        folder: A saved model folder of a task with a graph (not the detector).
        images: Calibration images, slides or folders of them.
        tiles: Calibration tiles.
        seed: Where the windows are cut.

    Returns:
        The int8 graph's path.

    Raises:
        MitokitError: A broken folder, a task without a graph, unreadable images, ONNX Runtime
            missing; OutputError where the folder cannot be written.
    """
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mitokit.io.atomic import atomic_path
    from mitokit.models.checkpoint import load_model

    if int(tiles) < 1:
        raise input_error(None, f"calibration tiles must be >= 1, got {tiles}")
    folder = Path(folder)
    model, cfg = load_model(folder, fold_bn=True)
    method = graph_method(cfg["task"], folder)
    example = example_input(model, cfg)
    float_graph = cached_graph(model, folder, cfg["task"], example)
    files = calibration_files(images)
    side = _window(model, cfg, example)
    data = calibration_tiles(files, side, count=int(tiles), seed=seed)
    resize = getattr(model, "resize_input", None) if method == "scores" else None
    if resize is not None:
        with torch.no_grad():
            data = np.ascontiguousarray(resize(torch.from_numpy(data)).numpy())
    log.debug("calibrating %s on %d tiles of %s px", folder, len(data), side or "whole")
    with tempfile.TemporaryDirectory(prefix="mitokit-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_graph), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(data),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        graph = onnx.load(str(quantized))
    meta: dict[str, Any] = {
        **graph_key(folder, method),
        "mitokit.calibration_tiles": str(len(data)),
        "mitokit.calibration_files": str(len(files)),
        "mitokit.calibration_seed": str(seed),
    }
    del graph.metadata_props[:]
    for key, value in meta.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value
    path = folder / INT8_GRAPH
    with atomic_path(path) as tmp_path:
        onnx.save(graph, str(tmp_path))
    return path


def _window(model: torch.nn.Module, cfg: dict[str, Any], example: torch.Tensor) -> int | None:
    """The side of the tiles the model reads at inference, before any resize of its own (None:
    a patch classifier reads its patches whole)."""
    data = (cfg.get("extra") or {}).get("data") or {}
    if cfg["task"] == "patch_classifier":
        return int(data["crop"]) if data.get("crop") else None
    side = data.get("tile_size") or data.get("input_size")
    return int(side) if side else int(example.shape[-1])
