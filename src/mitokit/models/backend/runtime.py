"""Running a model's graph with ONNX Runtime in place of PyTorch.

:func:`use_backend` swaps the method a model's graph computes (``scores`` or ``forward_maps``,
see :data:`~mitokit.models.backend.graph.GRAPH_METHODS`) for an :class:`OnnxCall` on that one
model object, so everything that calls the method (the predictors of ``mitokit detect``,
:func:`~mitokit.models.classifier.predict_images`, the ensembles, the weak localiser's maps and
points) runs the graph unchanged. Input and output stay torch tensors; the graph reads float32
``Bx3xHxW`` in the usual (contiguous) layout.

Threads: see :func:`onnx_threads`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mitokit.errors import MitokitError, input_error
from mitokit.models.backend.graph import (
    cached_graph,
    graph_method,
    int8_graph,
    require_onnxruntime,
)

BACKENDS = ("torch", "onnx", "onnx-int8")
"""``torch``: PyTorch eager; ``onnx``: the float graph in ONNX Runtime; ``onnx-int8``: the
statically quantised graph made by ``mitokit export --int8``."""


def onnx_threads(cores: int | None = None) -> int:
    """Intra-op threads of an ONNX Runtime session: one per core (``os.cpu_count()``).

    The rule of the slide engine (measured in ``benchmarks/slide_inference.py``, see the slide
    inference page of the docs): the model gets every core, and the reader threads, which
    mostly wait on decoding and file reads, share them; the session's threads do not spin while
    waiting for work, so a reader that needs a core gets it at once.
    """
    return max(1, int(cores if cores is not None else (os.cpu_count() or 1)))


def open_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of the graph ``path``, with ``threads`` intra-op threads
    (default :func:`onnx_threads`) that sleep rather than spin between calls."""
    require_onnxruntime()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise input_error(path, f"ONNX Runtime cannot load the graph ({first[:200]})") from None


class OnnxCall:
    """A model method run as an ONNX Runtime session: tensors in, tensors out.

    Args:
        session: The session (:func:`open_session`).
        prepare: Applied to the input first, in PyTorch (e.g. the resize to a model's fixed
            input size, which a traced graph cannot keep).
        single: Return the first output alone (``scores``) rather than a tuple.
    """

    def __init__(
        self,
        session: Any,
        *,
        prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
        single: bool = True,
    ) -> None:
        self.session = session
        self.prepare = prepare
        self.single = single

    def __call__(self, x: torch.Tensor) -> Any:
        if self.prepare is not None:
            x = self.prepare(x)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = [torch.from_numpy(o) for o in self.session.run(None, {"x": array})]
        return outs[0] if self.single else tuple(outs)


def example_input(model: nn.Module, cfg: dict[str, Any]) -> torch.Tensor:
    """One input of the size the model reads: its fixed ``input_size``, else its training tile."""
    size = getattr(model, "input_size", None)
    if size is None:
        data = (cfg.get("extra") or {}).get("data") or {}
        size = data.get("tile_size") or data.get("input_size") or data.get("crop") or 256
    size = int(size)
    if cfg["task"] == "weak_localiser":
        size = max(16, size // 16 * 16)
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def use_backend(
    model: nn.Module,
    folder: str | os.PathLike,
    cfg: dict[str, Any],
    backend: str = "torch",
    *,
    threads: int | None = None,
) -> nn.Module:
    """Run ``model`` (loaded from ``folder``, eval mode, on the CPU) through ``backend``.

    ``torch`` returns the model untouched. ``onnx`` exports its graph once
    (:func:`~mitokit.models.backend.graph.cached_graph`) and ``onnx-int8`` opens the int8 graph
    made by :func:`~mitokit.models.backend.quantize.quantize_model`; either replaces the graph's
    method on this model object. The model's ``mitokit_backend`` attribute names the backend.

    Raises:
        MitokitError: An unknown backend, a model not on the CPU, a task without a graph, no
            (or a stale) int8 graph, ONNX Runtime missing.
    """
    if backend not in BACKENDS:
        raise MitokitError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    model.mitokit_backend = backend
    if backend == "torch":
        return model
    require_onnxruntime()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        raise input_error(folder, f"the {backend} backend runs on the CPU, not on {device}")
    task = cfg["task"]
    method = graph_method(task, folder)
    if backend == "onnx":
        path = cached_graph(model, folder, task, example_input(model, cfg))
    else:
        path = int8_graph(folder, task)
    prepare = getattr(model, "resize_input", None) if method == "scores" else None
    call = OnnxCall(open_session(path, threads), prepare=prepare, single=method == "scores")
    # An instance attribute shadows the class's method for this model object only.
    object.__setattr__(model, method, call)
    model.mitokit_graph = Path(path)
    return model
