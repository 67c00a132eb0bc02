"""One contract between trained models and whole-slide inference.

The slide engine (:mod:`mitokit.engines.slide`) streams tiles and hands batches to a
:class:`Predictor`; it knows nothing of the model behind it. Every formulation that can read a
slide registers a factory under its task name (``register_predictor``), and
:func:`load_predictor` rebuilds the right one from a saved model folder:

- detectors (``detector``) and the weak localiser (``weak_localiser``) return points with scores;
- tile classifiers (``tile_classifier``, ``tile_regressor``) return a tile score only (no points;
  :class:`~mitokit.models.classifier.predictor.TileScorePredictor`).

Coordinates of the points are pixels of the input tile (x = column, y = row, origin top-left);
the engine shifts them to level-0 slide pixels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from mitokit.errors import input_error


@dataclass
class TilePrediction:
    """What a predictor says about one tile.

    Attributes:
        points: ``(N, 3)`` float64 array of ``x, y, score`` (tile pixels, score in [0, 1]).
        tile_score: One score for the whole tile (the highest point score, or the classifier's).
        heatmap: Optional ``(h, w)`` float32 map in [0, 1] over the tile (any resolution; the
            engine resizes it to the tile's footprint).
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    tile_score: float = 0.0
    heatmap: np.ndarray | None = None


class Predictor(Protocol):
    """A trained model that scores tiles.

    Attributes:
        task: The task name of the model it wraps.
        tile_size: Side in pixels of the tiles the model expects (e.g. 250).
        mpp: Microns per pixel the model was trained at (None: unknown; the slide is then read
            at its own resolution).
        device: Where ``predict`` runs.
    """

    task: str
    tile_size: int
    mpp: float | None
    device: torch.device

    def predict(self, batch: torch.Tensor) -> list[TilePrediction]:
        """Predictions for a ``Bx3xHxW`` float batch in [0, 1] already on ``device``."""


PredictorFactory = Callable[[torch.nn.Module, dict[str, Any], torch.device], Predictor]
_FACTORIES: dict[str, PredictorFactory] = {}


def register_predictor(task: str) -> Callable[[PredictorFactory], PredictorFactory]:
    """Decorator: ``factory(model, cfg, device) -> Predictor`` for models of ``task``."""

    def wrap(factory: PredictorFactory) -> PredictorFactory:
        _FACTORIES[task] = factory
        return factory

    return wrap


def load_predictor(
    folder: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    fold_bn: bool = True,
    backend: str = "torch",
    threads: int | None = None,
) -> Predictor:
    """The predictor of a saved model folder (written by the training engine).

    ``fold_bn`` folds the model's batch-norm layers into its convolutions
    (:func:`mitokit.models.inference.fold_batchnorm`): the same predictions up to float
    rounding, faster. ``backend`` runs the model in PyTorch (``torch``) or as an ONNX graph on
    the CPU (``onnx``, ``onnx-int8``: :func:`mitokit.models.backend.use_backend`, with
    ``threads`` intra-op threads); the predictor's ``backend`` attribute says which.

    Raises:
        MitokitError: A model whose task cannot read slides (e.g. a patch classifier), a
            backend the model has not (the detector runs in torch only), or a broken folder.
    """
    from mitokit.engines.task import get_task
    from mitokit.models.checkpoint import load_model, read_model_config

    task = read_model_config(folder)["task"]
    get_task(task)  # imports the formulation's module, which registers its predictor
    if task not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise input_error(folder, f"a {task!r} model cannot read slides (models that can: {known})")
    dev = torch.device(device)
    model, cfg = load_model(folder, map_location=dev, fold_bn=fold_bn)
    if backend != "torch":
        from mitokit.models.backend import use_backend

        model = use_backend(model, folder, cfg, backend, threads=threads)
    predictor = _FACTORIES[task](model, cfg, dev)
    predictor.backend = backend
    return predictor


def model_mpp(cfg: dict[str, Any]) -> float | None:
    """The training resolution saved with a model (``data.mpp``), or None."""
    data = (cfg.get("extra") or {}).get("data") or {}
    mpp = data.get("mpp")
    return None if mpp is None else float(mpp)


def __getattr__(name: str) -> Any:
    # The tile models' predictor moved to their package; it is imported on first use, since that
    # package imports this module.
    if name == "TileScorePredictor":
        from mitokit.models.classifier.predictor import TileScorePredictor

        return TileScorePredictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
