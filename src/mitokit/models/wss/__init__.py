"""Weakly supervised mitosis localisation from image-level labels (the second paper).

Importing this package registers the training task ``weak_localiser`` with the engine
(:func:`mitokit.engines.task.register_task`) and its slide predictor
(:func:`mitokit.models.predictors.register_predictor`).

Modules: :mod:`~mitokit.models.wss.model` (the network, its aggregations and builder),
:mod:`~mitokit.models.wss.postprocess` (map upsampling, offset, points, point scores),
:mod:`~mitokit.models.wss.data` (label readers, dataset), :mod:`~mitokit.models.wss.task` (the
training task) and :mod:`~mitokit.models.wss.predictor` (the slide predictor); every public name
is re-exported here.

Model (:class:`WeakLocaliser`): a torchvision ResNet-18 truncated after its third block
(``layer3``: 256 channels, stride 16), then a 1 x 1 convolution giving one logit per location of
the ``ceil(H / 16) x ceil(W / 16)`` map; its sigmoid is the instance (location) score. The image
logit aggregates the map, by ``aggregation``:

- ``max`` (default): the largest instance logit, so the image probability is the largest
  instance probability (max-pooling MIL);
- ``mean``: the image probability is the mean instance probability (computed as a logit in log
  space, so the BCE stays exact and stable);
- ``embedding_mean`` / ``embedding_max``: the ``layer3`` embeddings are pooled over the locations
  (mean / channel-wise max) and classified by the same 1 x 1 convolution used as a linear layer
  (for the mean this equals the mean instance logit);
- ``attention``: attention-based MIL (Ilse et al., ICML 2018): weights ``a_k = softmax_k(w^T
  (tanh(V h_k) * sigmoid(U h_k)))`` (``attention: gated``) or ``softmax_k(w^T tanh(V h_k))``
  (``plain``), pooled embedding ``sum_k a_k h_k``, classified by the same linear layer.

The loss is the BCE of the image logit against the image label. Whatever the aggregation, the
localisation map is the sigmoid of the instance logits. Weights are random (torchvision's
initialisation under the engine's seed) or a local ResNet-18 file (``model.weights``, read by
:func:`mitokit.models.backbones.load_init_weights`; its ``layer4`` and ``fc`` are dropped);
nothing is downloaded. Inputs are float ``Bx3xHxW`` in [0, 1]; ImageNet normalisation happens
inside the model, and no resampling: the pixel size stays the training one (``data.mpp``).

Localisation (:func:`map_to_points`): the sigmoid map is upsampled bilinearly to the input size
(:func:`upsample_map`: each location on the pixel its receptive field is centred on),
thresholded (``score >= threshold``), and by ``model.points``:

- ``components`` (default, the paper's): each 8-connected component
  (:func:`scipy.ndimage.label`) becomes one point: its centroid weighted by the map values, and
  as score the component's *maximum* map value;
- ``peaks``: the local maxima of the map above the threshold at least
  ``model.peak_distance_um`` apart (default 4 um, one map location at 0.25 um/px) split the
  components by a watershed of the map, and each basin becomes one point (weighted centroid,
  maximum as score): neighbouring mitoses whose responses merge above the threshold, which
  components count once, give one point each.

Points are continuous pixel coordinates (pixel ``(row i, column j)`` covers ``[j, j + 1) x [i,
i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``). The threshold is chosen on the validation
images at each evaluation and stored in the model as the buffer ``threshold`` (so it is saved
with the weights), by ``model.threshold``:

- ``roc``: the ROC operating point (Youden's J) of the image-level validation probabilities,
  :func:`mitokit.metrics.classification.best_threshold`;
- ``max_f1``: the threshold of highest pooled point F1 on the validation images with known truth
  points, among 0.05, 0.10 ... 0.95 (ROC where no validation image has truth points);
- ``fixed``: ``model.fixed_threshold``.

Map offset (``model.offset``): trained from image labels only, the map must fire somewhere in
a positive image, and the network may learn to fire a fixed distance away from the mitosis (in
its own frame: flips and rotations in training do not remove it; on generated tiles 10-45 px,
which costs most points their match). With ``rot180`` (default) each evaluation re-estimates this
displacement from the positive validation images alone: the map's peak of an image and of the
image turned by 180 degrees (turned back) lie at ``x + d`` and ``x - d``
(:func:`estimate_map_offset`). It is stored as the buffer ``offset`` and undone when the map is
upsampled (:func:`upsample_map`), before the threshold is chosen; ``none`` keeps it zero.

Test-time views (``model.tta``: ``none``, ``rot180`` or ``dihedral``):
:meth:`WeakLocaliser.localise` reads each image also turned by 180 degrees (or in all 8 turns and
flips), moves each view's map by the offset in the view's own frame, turns it back and
averages maps and probabilities. Evaluation then chooses the threshold on these averages, as
prediction will see them.

Without a usable validation set (no validation images, or one class only for ``roc``) the
threshold keeps its previous value (initially ``fixed_threshold``).

Data (``data`` section):

- ``labels``: a synthetic tiles folder (``mitokit synth tiles``: ``images/``,
  ``image_labels.csv``, and ``centroids.csv`` used as evaluation truth); or a CSV with columns
  ``image,label`` (label 0/1); or any label file :func:`~mitokit.io.annotations.read_annotations`
  reads, where an image is positive when it holds at least one ``mitosis`` object and those
  objects' centres are the evaluation truth. Images are found as in
  :mod:`mitokit.models.tasks_tile` (``images`` or ``images/`` beside the label file).
- ``points``: a label file of truth mitoses for evaluation only (overrides the above); never
  used for training.
- train / validation split by image (``val_fraction``, ``val_images``, ``split_seed``; see
  :func:`~mitokit.models.tasks_tile.split_images`).
- ``input_size``: side of the square training crops, taken at random positions when an image is
  bigger (its label is the whole image's, so a crop may miss the image's mitosis: choose the
  images' size where possible) and padded with white when smaller; null trains on whole images.
  Validation always uses whole images. Slides are read in tiles of ``input_size`` pixels (250
  when null).
- ``mpp``: microns per pixel of the images (default 0.25, saved with the model so slides are read
  at that resolution); ``radius_um``: matching radius of the point F1 (7.5 um, 30 px at 0.25).
- ``augment``: HED jitter and random flips / 90-degree rotations of the training crops.

Validation figures (``evaluate``): ``loss`` (image BCE), image ``auc``, ``balanced_accuracy``,
``tpr``, ``fpr`` (image probability >= 0.5), ``ece``, the chosen ``threshold`` and, where truth
points are known, ``point_precision``, ``point_recall``, ``point_f1`` at that threshold (matched
one-to-one within ``radius_um`` by :func:`mitokit.metrics.detection.match_points`).
"""

from mitokit.models.wss.data import (
    IMAGE_LABELS,
    TRUTH_POINTS,
    WeakImageDataset,
    WeakSource,
    collate_images,
    read_image_labels,
    read_weak_source,
)
from mitokit.models.wss.model import (
    AGGREGATIONS,
    ATTENTIONS,
    OFFSET_RULES,
    POINT_RULES,
    THRESHOLD_RULES,
    WEAK_LOCALISER,
    WIDTH,
    WeakLocaliser,
    build_weak_localiser,
)
from mitokit.models.wss.postprocess import (
    STRIDE,
    TTA_VIEWS,
    estimate_map_offset,
    map_to_points,
    point_counts,
    pooled_point_scores,
    upsample_map,
)
from mitokit.models.wss.predictor import DEFAULT_TILE, WeakLocaliserPredictor
from mitokit.models.wss.task import F1_GRID, WeakLocaliserTask, batch_maps

__all__ = [
    "AGGREGATIONS",
    "ATTENTIONS",
    "DEFAULT_TILE",
    "F1_GRID",
    "IMAGE_LABELS",
    "OFFSET_RULES",
    "POINT_RULES",
    "STRIDE",
    "THRESHOLD_RULES",
    "TRUTH_POINTS",
    "TTA_VIEWS",
    "WEAK_LOCALISER",
    "WIDTH",
    "WeakImageDataset",
    "WeakLocaliser",
    "WeakLocaliserPredictor",
    "WeakLocaliserTask",
    "WeakSource",
    "batch_maps",
    "build_weak_localiser",
    "collate_images",
    "estimate_map_offset",
    "map_to_points",
    "point_counts",
    "pooled_point_scores",
    "read_image_labels",
    "read_weak_source",
    "upsample_map",
]
