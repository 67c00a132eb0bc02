"""Inference backends: PyTorch eager, or the model's graph in ONNX Runtime (float or int8).

Every model that reads tiles for ``mitokit detect | predict | evaluate`` (the patch classifier
and its ensembles, the BC / Reg / Reg-NS tile models, the weak localiser) can run as an ONNX
graph on the CPU:

- :func:`use_backend` (``--backend onnx``): the graph is exported once to
  ``<model folder>/model.onnx`` and made again when the weights change
  (:mod:`mitokit.models.backend.graph`); its outputs equal PyTorch's within 1e-4 (tested).
- :func:`quantize_model` (``mitokit export MODEL --int8 --calibration IMAGES``, then
  ``--backend onnx-int8``): static int8, calibrated on tiles of the training data
  (:mod:`mitokit.models.backend.quantize`).
- :func:`onnx_threads`: the thread rule.

The Faster R-CNN detector keeps the torch backend (see
:func:`~mitokit.models.backend.graph.graph_method`).
"""

from mitokit.models.backend.graph import (
    GRAPH,
    GRAPH_METHODS,
    INT8_GRAPH,
    cached_graph,
    export_graph,
    graph_method,
    int8_graph,
    weights_sha256,
)
from mitokit.models.backend.quantize import calibration_tiles, quantize_model
from mitokit.models.backend.runtime import (
    BACKENDS,
    OnnxCall,
    onnx_threads,
    open_session,
    use_backend,
)

__all__ = [
    "BACKENDS",
    "GRAPH",
    "GRAPH_METHODS",
    "INT8_GRAPH",
    "OnnxCall",
    "cached_graph",
    "calibration_tiles",
    "export_graph",
    "graph_method",
    "int8_graph",
    "onnx_threads",
    "open_session",
    "quantize_model",
    "use_backend",
    "weights_sha256",
]
