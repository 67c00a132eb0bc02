"""The patch classifier of the first paper: one cell patch in, P(positive) out.

Task ``patch_classifier``: a ResNet (:func:`~mitokit.models.backbones.build_resnet`) on
cell-centred patches resampled to ``input_size`` (256) inside the model, trained with binary
cross-entropy on the majority label or on the probabilistic rater score (soft targets), in
batches with as many positive as negative patches (the paper trained with Adam at 1e-5; the
optimiser is the engine's). N seeds of it averaged make the ensemble scorer
(:class:`~mitokit.models.classifier.PatchEnsemble`).

Data layout (``data`` section of a config):

- ``labels``: a label file with one annotation per patch, in any format
  :func:`~mitokit.io.annotations.read_annotations` reads: a synthetic ``labels.csv``
  (``mitokit synth patches``), ``AMI-BR.csv`` or its train split, a CSV/COCO file whose every
  object names a patch image. The positive class is what a vote of 1 says yes to (the set's
  ``vote_target``: ``mitosis``, or ``atypical`` for AMi-Br, whose negative class is
  ``normal``). ``labels`` may also be a folder of class sub-folders (torchvision's ImageFolder
  layout, ``root/Atypical/*.png``, ``root/Normal/*.png``; see
  :mod:`mitokit.io.formats.imagefolder`): the class of a patch is its folder.
- ``positive``: the positive class folder of a class-folder data set (``Atypical``); without
  it, the folder named like mitosis, else an error listing the folders. Not taken by label
  files, which say their positive class themselves.
- ``images``: the folder holding the patches; by default the label file's folder, its
  ``images/`` and its ``patches/`` sub-folders are searched (see
  :func:`~mitokit.models.classifier.data.patch_path`).
- ``target``: ``majority`` (1 when the mean vote is above 0.5, ties negative) or ``soft``
  (the mean vote; each rater's repeated votes averaged first). Objects without votes use their
  agreement as the score, else their class (1 for the positive class).
- ``split``: which rows may be used for training (train + validation); the rest is the held-out
  test set and is never read. A file of training ids (``amibr_train_split.csv``, any label file,
  or a CSV whose ``id`` / ``dataset_uid`` / ``patch`` / ``image`` column, or else first column,
  lists ids, patch file names or slide names), a fraction of slides drawn with ``split_seed``,
  or null for every row.
- validation: fold ``fold`` of ``folds`` of :class:`sklearn.model_selection.StratifiedGroupKFold`
  over the training rows, grouped by slide (``<dataset>/<image>`` when the object has a
  ``dataset``, else the image id; a synthetic patch is its own image, so its own group),
  stratified by the hard label, shuffled with ``split_seed``; ``folds: 0`` (or ``fold: null``
  from Python) trains on all rows without validation.
- ``crop``: centre crop (pixels) applied to every patch before anything else (AMi-Br patches are
  128 px; the paper's cell patches 64 px), or null.
- ``augment``: random flips / 90-degree rotations and :class:`~mitokit.data.stain.HEDJitter`
  (``hed_sigma``, ``hed_bias``) on training patches, seeded from the ``seed`` of
  :meth:`PatchClassifierTask.build_data`.
- ``balanced``: class-balanced batches (:class:`~mitokit.data.sampling.ClassBalancedBatchSampler`)
  of ``data.batch_size`` patches. The engine's loader then takes whole batches from the
  sampler, so with ``balanced: true`` this, not ``train.batch_size``, sets the batch size (the
  task contract does not hand the engine's batch size to ``build_data``).
- ``n_max``: keep at most this many training rows (drawn with ``split_seed``), for quick runs.

The datasets returned carry ``ids`` and ``groups`` attributes (object id and slide group of each
item) so a run can record exactly which rows it trained and validated on.

A class without training rows is an error raised by :meth:`PatchClassifierTask.build_data`,
before any training starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError
from mitokit.models._common import check_int, collect_outputs, merge_section, scorer_figures
from mitokit.models.classifier.data import (
    PatchTable,
    PatchTransform,
    fold_split,
    read_patch_table,
    split_pool,
)
from mitokit.models.classifier.model import build_scorer

TASK = "patch_classifier"
PATCH_CLASSIFIER = TASK


@register_task(TASK)
class PatchClassifierTask:
    """Binary patch classifier (BCE on majority or soft targets, balanced batches)."""

    name = TASK
    model_defaults: Mapping[str, Any] = {
        "arch": "resnet18",
        "input_size": 256,
        "weights": None,
        "dropout": 0.0,
    }
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "positive": None,
        "target": "majority",
        "split": None,
        "split_seed": 0,
        "folds": 5,
        "fold": 0,
        "crop": None,
        "augment": True,
        "hed_sigma": 0.05,
        "hed_bias": 0.01,
        "balanced": True,
        "batch_size": 32,
        "n_max": None,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> torch.nn.Module:
        """A ResNet with one logit output (random or local initial weights)."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_scorer(cfg, output="logit")

    def split_rows(
        self, data_cfg: Mapping[str, Any]
    ) -> tuple[PatchTable, np.ndarray, np.ndarray, np.ndarray]:
        """The label table and the row positions of the pool, training and validation sets.

        The same rows :meth:`build_data` trains and validates on, so that an evaluation can
        re-score a trained model's own validation rows (e.g. to choose a threshold there).
        """
        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError("data.labels is required (a patch label file)")
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        folds = check_int(cfg["folds"], "data.folds", minimum=0)
        fold = check_int(cfg["fold"], "data.fold", minimum=0, allow_none=True)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        table = read_patch_table(cfg["labels"], images=cfg["images"], positive=cfg["positive"])
        pool = split_pool(table, cfg["split"], split_seed=split_seed)
        if n_max is not None and n_max < len(pool):
            rng = np.random.default_rng([split_seed, 1])
            pool = np.sort(rng.choice(pool, size=n_max, replace=False))
        tr, va = fold_split(
            table.label[pool], table.groups[pool], folds=folds, fold=fold, seed=split_seed
        )
        return table, pool, pool[tr], pool[va]

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training and validation patches (see the module docstring for the keys).

        Raises:
            MitokitError: Missing labels, bad settings, a patch not found, or a class without
                training rows (``"class 'atypical' has no training samples in <file>"``).
        """
        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["target"] not in ("majority", "soft"):
            raise MitokitError(f"data.target must be 'majority' or 'soft', got {cfg['target']!r}")
        batch_size = check_int(cfg["batch_size"], "data.batch_size", minimum=2)
        table, pool, train_idx, val_idx = self.split_rows(cfg)
        for cls, name in ((1, table.positive), (0, table.negative)):
            if not (table.label[train_idx] == cls).any():
                raise MitokitError(
                    f"class {name!r} has no training samples in {table.source}"
                    + (f" (split {cfg['split']})" if cfg["split"] is not None else "")
                )
        target = table.score if cfg["target"] == "soft" else table.label.astype(np.float64)
        train = self._dataset(
            table,
            train_idx,
            target,
            PatchTransform(
                crop=cfg["crop"],
                augment=cfg["augment"],
                hed_sigma=cfg["hed_sigma"],
                hed_bias=cfg["hed_bias"],
                seed=seed,
            ),
        )
        val = (
            self._dataset(table, val_idx, target, PatchTransform(crop=cfg["crop"]))
            if len(val_idx)
            else None
        )
        sampler = None
        if cfg["balanced"]:
            from mitokit.data.sampling import ClassBalancedBatchSampler

            sampler = ClassBalancedBatchSampler(table.label[train_idx], batch_size, seed)
        info = {
            "labels": str(table.source),
            "positive_class": table.positive,
            "target": cfg["target"],
            "n_pool": int(len(pool)),
            "n_heldout": int(len(table) - len(pool)),
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_train_positive": int(table.label[train_idx].sum()),
            "n_val_positive": int(table.label[val_idx].sum()),
            "n_groups_train": int(len(np.unique(table.groups[train_idx].astype(str)))),
            "n_groups_val": int(len(np.unique(table.groups[val_idx].astype(str)))),
        }
        return TaskData(
            train=train,
            val=val,
            train_sampler=sampler,
            batch_sampler=sampler is not None,
            info=info,
        )

    @staticmethod
    def _dataset(
        table: PatchTable, idx: np.ndarray, target: np.ndarray, transform: PatchTransform
    ) -> Any:
        from mitokit.data.datasets import PatchDataset

        ds = PatchDataset(
            [table.paths[i] for i in idx],
            {
                "target": target[idx].astype(np.float32),
                "label": table.label[idx],
            },
            transform=transform,
        )
        ds.ids = [table.ids[i] for i in idx]  # type: ignore[attr-defined]
        ds.groups = [str(table.groups[i]) for i in idx]  # type: ignore[attr-defined]
        return ds

    def loss(
        self, model: torch.nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE of the logits against ``target`` (hard 0/1 or soft mean vote)."""
        images = batch["image"].to(device)
        target = batch["target"].to(device).float()
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        return loss, {"bce": float(loss.detach()), "positive_share": float(target.mean())}

    def evaluate(
        self, model: torch.nn.Module, loader: Any, *, device: torch.device
    ) -> dict[str, float]:
        """Mean BCE, AUC, balanced accuracy at 0.5, ECE (against the soft or hard target)."""
        collected = collect_outputs(model, loader, device=device, label_key="label")
        return scorer_figures(
            collected,
            loss_of=F.binary_cross_entropy_with_logits,
            scores_of=torch.sigmoid,
            soft=True,
        )


__all__ = ["PATCH_CLASSIFIER", "TASK", "PatchClassifierTask"]
