"""Classifiers and regressors on ResNet backbones: patch classifier, BC, Reg and Reg-NS.

Importing this package registers three tasks with the engine
(:func:`mitokit.engines.task.register_task`):

- ``patch_classifier`` (:mod:`~mitokit.models.classifier.patch_task`): the first paper's
  cell-patch classifier, trained on majority or soft (mean-vote) targets in class-balanced
  batches;
- ``tile_classifier`` (BC) and ``tile_regressor`` (Reg, Reg-NS)
  (:mod:`~mitokit.models.classifier.tile_task`): the third paper's tile-level models, trained on
  tiles drawn events-first with a chosen share of negative tiles;

and the slide predictor of the two tile tasks (:class:`TileScorePredictor`).

Modules:

- :mod:`~mitokit.models.classifier.model`: the network (a ResNet with one output) and its scores;
- :mod:`~mitokit.models.classifier.data`: patch label tables, splits, transforms, tile datasets
  (tile images and labels: :mod:`mitokit.models.tile_source`);
- :mod:`~mitokit.models.classifier.patch_task`, :mod:`~mitokit.models.classifier.tile_task`: what
  the trainer drives;
- :mod:`~mitokit.models.classifier.ensemble`: :class:`PatchEnsemble` (the mean probability of N
  seeds, the scorer the diffusion work relies on), :func:`load_ensemble`,
  :func:`ensemble_configs` (per-seed configs for training an ensemble);
- :mod:`~mitokit.models.classifier.predictor`: prediction on image files
  (:func:`predict_images`) and on the sub-tiles of images (:func:`predict_tiles`), with optional
  test-time flips, and the slide predictor.

Backbones and initial weights: :mod:`mitokit.models.backbones` (never downloaded); saved models:
:mod:`mitokit.models.checkpoint`.
"""

from mitokit.models.checkpoint import expand_checkpoints
from mitokit.models.classifier.data import (
    PatchTransform,
    center_crop,
    patch_path,
    read_patch_table,
)
from mitokit.models.classifier.ensemble import PatchEnsemble, ensemble_configs, load_ensemble
from mitokit.models.classifier.model import (
    ARCHS,
    ResNetScorer,
    build_resnet,
    load_init_weights,
    model_scores,
)
from mitokit.models.classifier.patch_task import PATCH_CLASSIFIER, PatchClassifierTask
from mitokit.models.classifier.predictor import (
    TileScorePredictor,
    predict_images,
    predict_tiles,
    score_batch,
)
from mitokit.models.classifier.tile_task import (
    TILE_CLASSIFIER,
    TILE_REGRESSOR,
    TILE_TASKS,
    TileClassifierTask,
    TileRegressorTask,
)
from mitokit.models.tile_source import image_files, read_tile_source

__all__ = [
    "ARCHS",
    "PATCH_CLASSIFIER",
    "TILE_CLASSIFIER",
    "TILE_REGRESSOR",
    "TILE_TASKS",
    "PatchClassifierTask",
    "PatchEnsemble",
    "PatchTransform",
    "ResNetScorer",
    "TileClassifierTask",
    "TileRegressorTask",
    "TileScorePredictor",
    "build_resnet",
    "center_crop",
    "ensemble_configs",
    "expand_checkpoints",
    "image_files",
    "load_ensemble",
    "load_init_weights",
    "model_scores",
    "patch_path",
    "predict_images",
    "predict_tiles",
    "read_patch_table",
    "read_tile_source",
    "score_batch",
]
