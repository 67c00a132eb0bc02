"""A model's network as an ONNX graph, cached beside its weights.

:func:`cached_graph` exports the part of a model that does the arithmetic (its ``scores`` for the
classifiers and tile models, its ``forward_maps`` for the weak localiser: see
:data:`GRAPH_METHODS`) to ``<model folder>/model.onnx`` once, and reuses that file while the
weights stay the same: the graph carries the SHA-256 of ``model.safetensors`` and the method it
computes in its metadata, and a graph whose key no longer matches is exported again. The file is
written atomically (:func:`mitokit.io.atomic.atomic_path`); a folder that cannot be written to
gets the graph in a temporary file instead, with a note that it is not cached.

The batch, height and width of the input are dynamic axes, so one graph serves every batch size
and (for the fully convolutional weak localiser) every tile size.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mitokit.errors import MitokitError, input_error

log = logging.getLogger("mitokit")

GRAPH = "model.onnx"
"""The float graph's file name in a model folder."""

INT8_GRAPH = "model.int8.onnx"
"""The int8 graph's file name in a model folder (:func:`mitokit.models.backend.quantize_model`)."""

OPSET = 17
EXPORT_VERSION = "1"
"""Bumped when the export changes, so that older cached graphs are made again."""

GRAPH_METHODS = {
    "patch_classifier": "scores",
    "tile_classifier": "scores",
    "tile_regressor": "scores",
    "weak_localiser": "forward_maps",
}
"""The model method each task's graph computes (tasks missing here have no graph)."""


class _Method(nn.Module):
    """``model.<method>`` as a module's ``forward``, to be exported."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> Any:
        return getattr(self.model, self.method)(x)


def graph_method(task: str, folder: str | os.PathLike | None = None) -> str:
    """The method the graph of a ``task`` model computes.

    Raises:
        MitokitError: A task without a graph (the Faster R-CNN detector: torchvision's
            detection models export one image per call with their post-processing inside, so
            the batched tile stream would not be served; the diffusion model is not a reader).
    """
    if task not in GRAPH_METHODS:
        known = ", ".join(sorted(GRAPH_METHODS))
        raise input_error(
            folder, f"a {task!r} model has no ONNX backend (models that have: {known}); use torch"
        )
    return GRAPH_METHODS[task]


def weights_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 of the model folder's ``model.safetensors`` (the cache key of its graphs)."""
    from mitokit.models.checkpoint import WEIGHTS

    digest = hashlib.sha256()
    path = Path(folder) / WEIGHTS
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise input_error(path, f"cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def graph_key(folder: str | os.PathLike, method: str) -> dict[str, str]:
    """The metadata a cached graph of ``folder`` must carry to be reused."""
    return {
        "mitokit.weights_sha256": weights_sha256(folder),
        "mitokit.method": method,
        "mitokit.export_version": EXPORT_VERSION,
    }


def read_key(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``mitokit.*`` metadata of an ONNX file (None: missing or unreadable)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a damaged or foreign file is simply not a cache hit
        return None
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("mitokit.")}


def export_graph(
    model: nn.Module,
    method: str,
    example: torch.Tensor,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export ``model.<method>`` for float ``Bx3xHxW`` input to the ONNX file ``path``.

    The model is exported as it is (eval mode, on the CPU); fold its batch norm first
    (:func:`mitokit.models.inference.fold_batchnorm`) to export the graph it runs. Outputs are
    named ``out0``, ``out1`` ...; ``metadata`` is stored in the file's metadata.
    """
    import onnx

    from mitokit.io.atomic import atomic_path

    module = _Method(model, method).eval().cpu()
    with torch.no_grad():
        outs = module(example.cpu())
    n_out = len(outs) if isinstance(outs, (tuple, list)) else 1
    names = [f"out{i}" for i in range(n_out)]
    # A model with a fixed input size was traced at that size (its resize is not in the graph:
    # OnnxCall applies it first), so its graph takes that size only.
    fixed = getattr(model, "input_size", None) is not None
    axes = {"x": {0: "batch"} if fixed else {0: "batch", 2: "height", 3: "width"}}
    for name in names:
        axes[name] = {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notices (legacy path, traced shapes)
        torch.onnx.export(
            module,
            (example.cpu(),),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
    return path


def cached_graph(
    model: nn.Module, folder: str | os.PathLike, task: str, example: torch.Tensor
) -> Path:
    """The float graph of a saved model: ``<folder>/model.onnx``, exported when missing or stale.

    Args:
        model: The model loaded from ``folder`` (batch norm folded, eval mode).
        folder: Its model folder.
        task: Its task (:data:`GRAPH_METHODS`).
        example: One input batch (its shape only matters for tracing; axes stay dynamic).
    """
    from mitokit.io.atomic import OutputError

    method = graph_method(task, folder)
    key = graph_key(folder, method)
    path = Path(folder) / GRAPH
    if path.is_file() and read_key(path) == key:
        return path
    try:
        return export_graph(model, method, example, path, key)
    except OutputError as exc:
        tmp_dir = tempfile.mkdtemp(prefix="mitokit-onnx-")
        atexit.register(shutil.rmtree, tmp_dir, True)  # the session holds the graph in memory
        tmp = Path(tmp_dir) / GRAPH
        log.warning("%s; the ONNX graph is exported to %s and not cached", exc, tmp)
        return export_graph(model, method, example, tmp, key)


def int8_graph(folder: str | os.PathLike, task: str) -> Path:
    """``<folder>/model.int8.onnx``, made for these weights by ``mitokit export --int8``.

    Raises:
        MitokitError: No int8 graph, or one made for other weights.
    """
    method = graph_method(task, folder)
    path = Path(folder) / INT8_GRAPH
    if not path.is_file():
        raise input_error(
            folder,
            "no int8 graph (model.int8.onnx): make one with "
            "`mitokit export MODEL --int8 --calibration IMAGES`",
        )
    found = read_key(path) or {}
    want = graph_key(folder, method)
    if any(found.get(k) != v for k, v in want.items()):
        raise input_error(
            path,
            "was made for other weights; make it again with "
            "`mitokit export MODEL --int8 --calibration IMAGES`",
        )
    return path


def require_onnxruntime() -> None:
    """Raise a one-line error where ONNX Runtime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MitokitError(
            "the onnx backend needs onnx and onnxruntime: pip install 'mitokit[onnx]'"
        ) from None
