"""The weak localiser's training task (``weak_localiser``), the one the trainer drives.

:class:`WeakLocaliserTask` builds the model and data from a config, computes the image-level
loss and evaluates: image figures, the map offset, the threshold (by the model's rule, over
:data:`F1_GRID` for ``max_f1``) and the point figures. Importing this module registers it with
the engine (:func:`mitokit.engines.task.register_task`).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from mitokit.engines.task import TaskData, register_task
from mitokit.errors import MitokitError, input_error
from mitokit.models._common import (
    WorkerDraws,
    binary_metrics,
    check_fraction,
    check_int,
    evaluating,
    merge_section,
)
from mitokit.models.wss.data import WeakImageDataset, collate_images, read_weak_source
from mitokit.models.wss.model import (
    WEAK_LOCALISER,
    WeakLocaliser,
    _unwrap,
    build_weak_localiser,
)
from mitokit.models.wss.postprocess import estimate_map_offset, pooled_point_scores, upsample_map

#: Thresholds tried by the ``max_f1`` rule.
F1_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))


def batch_maps(
    model: WeakLocaliser, images: torch.Tensor | list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Image logits ``(B,)`` and instance logit maps (one ``(h, w)`` per image) of a batch."""
    if isinstance(images, torch.Tensor):
        logits, maps = model.forward_maps(images.to(device))
        return logits, list(maps)
    outs = [model.forward_maps(im[None].to(device)) for im in images]
    return torch.cat([o[0] for o in outs]), [o[1][0] for o in outs]


@register_task(WEAK_LOCALISER)
class WeakLocaliserTask:
    """Image-level BCE training of :class:`WeakLocaliser`; localisation evaluated on points."""

    name = WEAK_LOCALISER
    model_defaults: Mapping[str, Any] = {
        "weights": None,
        "aggregation": "max",
        "attention": "gated",
        "attention_dim": 128,
        "threshold": "roc",
        "fixed_threshold": 0.5,
        "offset": "rot180",
        "tta": "none",
        "points": "components",
        "peak_distance_um": 4.0,
    }
    data_defaults: Mapping[str, Any] = {
        "labels": None,
        "images": None,
        "points": None,
        "input_size": None,
        "mpp": 0.25,
        "radius_um": 7.5,
        "val_fraction": 0.2,
        "val_images": None,
        "split_seed": 0,
        "augment": True,
        "hed_sigma": 0.05,
        "hed_bias": 0.01,
        "n_max": None,
    }

    def build_model(self, model_cfg: Mapping[str, Any]) -> WeakLocaliser:
        """The weak localiser, random or with a local ResNet-18 trunk."""
        cfg = merge_section(self.model_defaults, model_cfg, section="model", task=self.name)
        return build_weak_localiser(
            aggregation=cfg["aggregation"],
            attention=cfg["attention"],
            attention_dim=cfg["attention_dim"],
            weights=cfg["weights"],
            threshold=check_fraction(cfg["fixed_threshold"], "model.fixed_threshold"),
            threshold_rule=cfg["threshold"],
            offset_rule=cfg["offset"],
            tta=cfg["tta"],
            points_rule=cfg["points"],
            peak_distance_um=cfg["peak_distance_um"],
        )

    def build_data(self, data_cfg: Mapping[str, Any], *, seed: int) -> TaskData:
        """Training images (random crops, augmented) and whole validation images, by image.

        Raises:
            MitokitError: Missing labels or images, bad settings, or a training split of one
                class only.
        """
        from mitokit.metrics.detection import radius_to_px

        cfg = merge_section(self.data_defaults, data_cfg, section="data", task=self.name)
        if cfg["labels"] is None:
            raise MitokitError(
                "data.labels is required (a `mitokit synth tiles` folder, an image,label CSV "
                "or a label file with points)"
            )
        crop = check_int(cfg["input_size"], "data.input_size", minimum=32, allow_none=True)
        split_seed = check_int(cfg["split_seed"], "data.split_seed", minimum=0)
        n_max = check_int(cfg["n_max"], "data.n_max", minimum=1, allow_none=True)
        val_fraction = check_fraction(cfg["val_fraction"], "data.val_fraction", high=0.9)
        for key in ("mpp", "radius_um"):
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise MitokitError(f"data.{key} must be a positive number, got {v!r}")
        radius_px = radius_to_px(radius_um=float(cfg["radius_um"]), mpp=float(cfg["mpp"]))

        source = read_weak_source(cfg["labels"], images=cfg["images"], points=cfg["points"])
        ids = source.image_ids[:n_max] if n_max else source.image_ids
        from mitokit.models.tile_source import split_images

        try:
            train_ids, val_ids = split_images(
                ids, val_fraction=val_fraction, val_images=cfg["val_images"], seed=split_seed
            )
        except MitokitError as exc:
            raise input_error(source.labels_file, str(exc)) from None
        n_pos = sum(source.labels[i] for i in train_ids)
        if n_pos in (0, len(train_ids)):
            kind = "positive" if n_pos == 0 else "negative"
            raise input_error(source.labels_file, f"no {kind} image among the training images")
        draws = WorkerDraws(seed)
        train = WeakImageDataset(
            source,
            train_ids,
            crop=crop,
            augment=bool(cfg["augment"]),
            hed_sigma=float(cfg["hed_sigma"]),
            hed_bias=float(cfg["hed_bias"]),
            radius_px=radius_px,
            mpp=float(cfg["mpp"]),
            draws=draws,
        )
        val = (
            WeakImageDataset(source, val_ids, radius_px=radius_px, mpp=float(cfg["mpp"]))
            if val_ids
            else None
        )
        info = {
            "labels": str(source.labels_file),
            "points": None if source.points_file is None else str(source.points_file),
            "input_size": crop,
            "radius_px": radius_px,
            "train_images": train_ids,
            "val_images": val_ids,
            "n_train": len(train_ids),
            "n_val": len(val_ids),
            "n_train_positive": int(n_pos),
            "n_val_positive": int(sum(source.labels[i] for i in val_ids)),
            "n_val_with_points": int(sum(i in source.points for i in val_ids)),
        }
        return TaskData(train=train, val=val, collate=collate_images, info=info)

    def loss(
        self, model: nn.Module, batch: Any, *, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE of the image logits against the image labels."""
        images = batch["image"]
        if isinstance(images, torch.Tensor):
            logits = model(images.to(device))
        else:
            logits = torch.cat([model(im[None].to(device)) for im in images])
        target = batch["label"].to(device).float()
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        return loss, {"bce": float(loss.detach()), "positive_share": float(target.mean())}

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device) -> dict[str, float]:
        """Image BCE, AUC, balanced accuracy; the map offset and threshold; point F1 if known.

        With ``offset_rule`` ``rot180`` the positive validation images are also read turned by
        180 degrees and the model's ``offset`` is re-estimated (:func:`estimate_map_offset`:
        image labels only) before the threshold is chosen on the moved maps.
        """
        module = _unwrap(model)
        calibrate = getattr(module, "offset_rule", "none") == "rot180"
        logits, labels, radius, mpp = [], [], 30.0, 0.25
        pointed: list[tuple[torch.Tensor, tuple[int, int], np.ndarray]] = []
        positive: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = []
        with evaluating(module):
            for batch in loader:
                images = batch["image"]
                z, lmaps = batch_maps(module, images, device)
                logits.append(z.float().cpu())
                labels.append(batch["label"].float().cpu())
                keep = [k for k in range(len(lmaps)) if float(batch["label"][k]) > 0.5]
                if calibrate and keep:
                    turned = [torch.rot90(images[k], 2, (-2, -1)) for k in keep]
                    if isinstance(images, torch.Tensor):
                        turned = torch.stack(turned)
                    _, rmaps = batch_maps(module, turned, device)
                    for k, r in zip(keep, rmaps, strict=True):
                        size = tuple(images[k].shape[-2:])
                        positive.append((torch.sigmoid(lmaps[k].float()).cpu(), r, size))
                for k, m in enumerate(lmaps):
                    if bool(batch["has_points"][k]):
                        truth = batch["points"][k].cpu().numpy().astype(np.float64)
                        pointed.append((m.float().cpu(), tuple(images[k].shape[-2:]), truth))
                radius = float(batch["radius_px"][0])
                mpp = float(batch["mpp"][0])
        if not logits:
            return {"loss": math.nan, "auc": math.nan, "balanced_accuracy": math.nan}
        if calibrate:
            estimate = estimate_map_offset(
                [p for p, _, _ in positive],
                [torch.sigmoid(r.float()).cpu() for _, r, _ in positive],
                [hw for _, _, hw in positive],
            )
            if estimate is not None:  # too few positive images: keep the previous offset
                with torch.no_grad():
                    module.offset.copy_(torch.tensor(estimate))
        offset = module.offset.detach().cpu()
        truths = [t for _, _, t in pointed]
        z, y = torch.cat(logits), torch.cat(labels)
        loss = float(F.binary_cross_entropy_with_logits(z, y))
        probs = torch.sigmoid(z).numpy().astype(np.float64)
        if getattr(module, "tta", "none") == "none":
            maps = [
                upsample_map(torch.sigmoid(m), hw, offset=offset).numpy() for m, hw, _ in pointed
            ]
        else:  # threshold and point F1 on the maps and probabilities prediction will give
            probs, maps = self._tta_pass(module, loader, device)
        out: dict[str, float] = {"loss": loss}
        out.update(binary_metrics(y.numpy(), probs, threshold=0.5))
        spacing = module.min_distance_px(mpp)
        threshold = self._choose_threshold(
            module, y.numpy(), probs, maps, truths, radius, min_distance_px=spacing
        )
        with torch.no_grad():
            module.threshold.fill_(threshold)
        out["threshold"] = threshold
        out["offset_x"], out["offset_y"] = (float(v) for v in offset)
        if maps:
            scores = pooled_point_scores(
                maps, truths, threshold=threshold, radius_px=radius, min_distance_px=spacing
            )
            out.update({f"point_{k}": float(scores[k]) for k in ("precision", "recall", "f1")})
        out["n"] = int(len(y))
        return out

    @staticmethod
    def _tta_pass(
        module: WeakLocaliser, loader: Any, device: torch.device
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Image probabilities of all images and maps of those with points, through ``localise``."""
        probs, maps = [], []
        with evaluating(module):
            for batch in loader:
                images = batch["image"]
                singles = (
                    [images] if isinstance(images, torch.Tensor) else [im[None] for im in images]
                )
                outs = [module.localise(im.to(device)) for im in singles]
                p = torch.cat([o[0] for o in outs]).float().cpu()
                heat = [h for o in outs for h in o[1].float().cpu()]
                probs.append(p)
                maps += [h.numpy() for k, h in enumerate(heat) if bool(batch["has_points"][k])]
        return torch.cat(probs).numpy().astype(np.float64), maps

    def _choose_threshold(
        self,
        model: WeakLocaliser,
        y: np.ndarray,
        probs: np.ndarray,
        maps: list[np.ndarray],
        truths: list[np.ndarray],
        radius: float,
        *,
        min_distance_px: float | None = None,
    ) -> float:
        from mitokit.metrics.classification import best_threshold

        rule = getattr(model, "threshold_rule", "roc")
        if rule == "fixed":
            return float(model.threshold)
        if rule == "max_f1":
            if maps:
                f1 = [
                    pooled_point_scores(
                        maps, truths, threshold=t, radius_px=radius, min_distance_px=min_distance_px
                    )["f1"]
                    for t in F1_GRID
                ]
                return float(F1_GRID[int(np.argmax(f1))])
            warnings.warn(
                "threshold max_f1: no validation image has truth points; using the ROC point",
                stacklevel=2,
            )
        if y.min() == y.max():
            return float(model.threshold)  # one class only: keep the previous threshold
        return float(best_threshold(y, probs))
