"""The detection formulation of the crowd-label study (third paper): Det, Det-NS, Det-WL, Det-NS-WL.

Importing this package registers the task ``detector`` with the engine and its
:class:`~mitokit.models.predictors.Predictor` for slide inference.

Modules: :mod:`~mitokit.models.detector.model` (the network and its builder),
:mod:`~mitokit.models.detector.weights` (initial weights from a local file),
:mod:`~mitokit.models.detector.data` (tiles with boxes, truth centres, targets),
:mod:`~mitokit.models.detector.task` (what the trainer drives),
:mod:`~mitokit.models.detector.postprocess` (centre suppression, boxes to points, point scores)
and :mod:`~mitokit.models.detector.predictor` (slide inference). Every public name is
importable from this package.

Model: torchvision's Faster R-CNN with a ResNet-FPN backbone (:func:`build_detector`) and two
classes (background, mitosis), built offline (``weights=None``; initial weights only from a local
file). Two changes to torchvision's detector, both invisible in its state dict (so torchvision
and mitokit detector weights load into each other):

- :class:`TileTransform`: with ``min_size: null`` (the default) tiles keep their size; torchvision
  would resample a 250-pixel tile to 800. The ImageNet normalisation stays inside the model.
- :class:`WeightedRoIHeads`: the box head's classification loss weights each sampled proposal
  by the agreement of the box it matches (``targets[i]["weights"]``; background proposals
  weigh 1): ``sum_j w_j CE_j / n`` over the ``n`` sampled proposals, so weights of 1 give
  torchvision's loss exactly. This is Det-WL (``agreement_weighted: true``); boxes are never
  duplicated. The box regression and the RPN losses are unweighted.

The four variants are one task with two switches: ``data.negative_ratio`` (0: positive tiles
only, Det; >= 1: that many negative tiles per positive draw, Det-NS) and
``model.agreement_weighted`` (Det-WL, Det-NS-WL).

Detection contract (DESIGN.md): images ``list[Tensor 3xHxW in [0, 1]]``; targets
``list[dict(boxes float [K, 4] xyxy, labels int64 [K], weights float [K])]``; training returns
a loss dict, eval per-image dicts with ``boxes``, ``labels`` and ``scores``. A tile without
objects has ``boxes`` of shape ``(0, 4)`` and trains as background.

Model section (``model``):

- ``arch``: ``resnet50`` (the papers'), ``resnet34`` or ``resnet18`` (lighter, for CPU).
- ``weights``: null (random) or a local ``.safetensors`` / ``.pt`` / ``.pth`` file, read
  without running code: a whole detector's state dict (torchvision's key names, e.g. a
  mitokit detector or a torchvision Faster R-CNN; a box predictor of another class count is
  skipped) or a backbone-only ResNet state dict (ImageNet weights; its ``fc`` is ignored).
- ``norm``: ``batch`` (trainable batch norm; needed to train from random weights, where a
  frozen identity norm lets a ResNet-50's activations grow until the loss diverges) or
  ``frozen`` (``FrozenBatchNorm2d``, torchvision's set-up for fine-tuning ImageNet weights).
  Either way validation leaves the weights and statistics untouched (see ``evaluate``).
- ``trainable_layers``: ResNet stages trained, counted from the top (0-5, as torchvision);
  null: 3 with a weights file, 5 without. Batch norms of frozen stages stay in eval mode.
- ``agreement_weighted``: weight the classification loss by agreement (WL).
- ``min_size`` / ``max_size``: torchvision's resizing (null: keep the tile size).
- ``box_score_thresh``, ``box_nms_thresh``, ``box_detections_per_img``: inference settings;
  ``centre_suppression`` (default true): after the box NMS (by IoU), a detection whose centre
  lies inside a higher-scoring kept box, or whose box holds that box's centre, is dropped
  (:func:`suppress_centres`): a small box nested in a large one on the same figure has a low
  IoU with it and survives the NMS, yet counts the figure twice as a point;
  ``box_batch_size_per_image``: proposals sampled per tile for the box head's loss;
  ``rpn_post_nms_top_n_test``: proposals the box head scores per tile at inference.

Data section (``data``): the labels and images are those of the tile formulations
(:mod:`mitokit.models.tile_source`: a label file :func:`~mitokit.io.annotations.read_annotations`
reads, or a ``mitokit synth tiles`` folder, whose ``crowd.json`` is used), cut into
``tile_size`` tiles at ``stride``, split by image, drawn events-first with ``negative_ratio``
negative tiles per positive draw (:class:`~mitokit.data.sampling.EventTileSampler`), augmented
by HED jitter and flips / quarter turns (boxes follow). Further keys:

- ``mpp`` (0.25): microns per pixel of the images; saved with the model so slide inference
  reads slides at the training resolution.
- ``point_box_um`` (12.5): side of the square box a point-only label gets (50 px at 0.25).
- ``min_box_fraction`` (0.2): a box clipped by the tile stays a target only when more than this
  fraction of it is inside (every box whose centre is inside is kept).
- ``val_labels``: the truth of the validation F1 (default: the training labels), e.g. a
  ``consensus.json``; objects of class mitosis with an agreement of at least
  ``val_min_agreement`` (0.5; objects without an agreement count) are true.
- ``match_radius_um`` (7.5, MIDOG) and ``f1_threshold`` (0.5) of the validation F1.

Validation (``evaluate``): the detection losses, computed in training mode (torchvision returns
losses only there) with every batch norm in eval mode and the random proposal sampling under a
fixed, forked seed, so the pass changes neither the model nor any random stream; then box
centres in eval mode matched one-to-one within ``match_radius_um`` to the truth centres inside
each tile (:func:`~mitokit.metrics.detection.evaluate_points`, every tile counted on its own):
precision, recall and F1 at ``f1_threshold``, and the best F1 over score thresholds with its
threshold (:func:`~mitokit.metrics.detection.sweep_thresholds`).
"""

from mitokit.models.detector.data import DetectionTileDataset, truth_centres
from mitokit.models.detector.model import (
    LOSS_KEYS,
    NORMS,
    MitosisDetector,
    TileTransform,
    WeightedRoIHeads,
    build_detector,
    weighted_fastrcnn_loss,
)
from mitokit.models.detector.postprocess import (
    box_centres,
    detect,
    point_scores,
    suppress_centres,
)
from mitokit.models.detector.predictor import DetectorPredictor
from mitokit.models.detector.task import DETECTOR, DetectorTask
from mitokit.models.detector.weights import load_detector_weights

__all__ = [
    "DETECTOR",
    "LOSS_KEYS",
    "NORMS",
    "DetectionTileDataset",
    "DetectorPredictor",
    "DetectorTask",
    "MitosisDetector",
    "TileTransform",
    "WeightedRoIHeads",
    "box_centres",
    "suppress_centres",
    "build_detector",
    "detect",
    "load_detector_weights",
    "point_scores",
    "truth_centres",
    "weighted_fastrcnn_loss",
]
