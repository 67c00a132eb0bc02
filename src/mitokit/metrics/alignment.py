"""Which predicted image is which true image, before anything is scored.

Detection scores are computed image by image, so a prediction set whose images carry other names
than the truth's (``pred.csv`` read as image ``pred``, a slide named ``slide.svs`` on one side and
``slide`` on the other) would score F1 = 0 without a word. :func:`align_images` renames what can be
renamed without guessing, says what it did, and refuses when the two sides share no image at all.

Rules, in order:

1. A predicted image id that the truth also names is kept.
2. A predicted id that the truth lacks is renamed to the truth id of the same file stem
   (``slide.svs`` -> ``slide``, ``a/b/slide.tif`` -> ``slide.svs``), when exactly one truth id has
   that stem and no other predicted image already goes by it.
3. When each side names exactly one image and the names still differ, the two are matched
   (a single-image prediction file against a single-image truth file).
4. When the predictions name images and none of them is a truth image, it is an error: the message
   lists a few ids of each side.
5. Images named by one side only stay in the evaluation (a truth image without predictions has all
   its objects as false negatives, a predicted image the truth lacks has all its predictions as
   false positives) and are listed in the notes.

A prediction set that names no image at all (nothing was detected anywhere) is not an error: every
true object is then a false negative, and a note says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import PurePath, PureWindowsPath
from typing import NamedTuple

from mitokit.errors import MitokitError
from mitokit.io.annotations import AnnotationSet

_SHOWN = 4


class ImageAlignment(NamedTuple):
    """The result of :func:`align_images`.

    Attributes:
        pred: The predictions, with image ids renamed to the truth's where they were matched.
        notes: One line per thing the caller should be told (renames, one-sided images).
        renamed: Predicted image id -> the truth image id it was matched to.
        only_in_pred: Image ids (after renaming) that only the predictions name, in order.
        only_in_truth: Image ids that only the truth names, in order.
    """

    pred: AnnotationSet
    notes: tuple[str, ...]
    renamed: dict[str, str]
    only_in_pred: tuple[str, ...]
    only_in_truth: tuple[str, ...]


def image_ids(annotations: AnnotationSet) -> list[str]:
    """The image ids a set names: its listed images, then those of its objects, in order."""
    seen: dict[str, None] = dict.fromkeys(annotations.images)
    for ann in annotations.annotations:
        seen.setdefault(ann.image, None)
    return list(seen)


def format_ids(ids: Iterable[str], *, shown: int = _SHOWN) -> str:
    """``'a', 'b', 'c' and 7 more``: a few ids quoted, then how many were left out."""
    ids = list(ids)
    if not ids:
        return "none"
    head = ", ".join(repr(str(i)) for i in ids[:shown])
    rest = len(ids) - shown
    return f"{head} and {rest} more" if rest > 0 else head


def _stem(image_id: str) -> str:
    """The file stem of an id that may be a path (POSIX or Windows separators)."""
    return PurePath(PureWindowsPath(image_id).name).stem


def align_images(pred: AnnotationSet, truth: AnnotationSet) -> ImageAlignment:
    """Match the image ids of predictions to those of the truth, or refuse when none match.

    See the module docstring for the rules. Nothing is renamed on the truth side.

    Args:
        pred: The predictions.
        truth: The ground truth.

    Returns:
        The renamed predictions, the notes to show, the renames, and the one-sided images.

    Raises:
        MitokitError: The predictions name images and none of them matches a truth image; the
            message names a few image ids of each side.
    """
    truth_ids = image_ids(truth)
    pred_ids = image_ids(pred)
    truth_set = set(truth_ids)
    notes: list[str] = []
    renamed: dict[str, str] = {}

    if not pred_ids:
        if truth_ids:
            notes.append(
                "the predictions name no image: every true object counts as a false negative"
            )
        return ImageAlignment(pred, tuple(notes), renamed, (), tuple(truth_ids))

    renamed.update(_by_stem(pred_ids, truth_ids))  # rule 2
    if renamed:
        pairs = [f"{p!r} -> {t!r}" for p, t in renamed.items()]
        more = f" and {len(pairs) - _SHOWN} more" if len(pairs) > _SHOWN else ""
        notes.append(
            f"{len(pairs)} pred image(s) matched to the truth image of the same file stem: "
            f"{', '.join(pairs[:_SHOWN])}{more}"
        )

    # Rule 3: one image on each side.
    if not renamed and len(pred_ids) == 1 and len(truth_ids) == 1 and pred_ids[0] not in truth_set:
        renamed[pred_ids[0]] = truth_ids[0]
        notes.append(
            f"pred image {pred_ids[0]!r} matched to truth image {truth_ids[0]!r} (one image each)"
        )

    aligned_ids = list(dict.fromkeys(renamed.get(p, p) for p in pred_ids))
    if not any(p in truth_set for p in aligned_ids):
        raise MitokitError(
            "no predicted image matches a truth image: the predictions name "
            f"{len(pred_ids)} image(s) ({format_ids(pred_ids)}), the truth "
            f"{len(truth_ids)} ({format_ids(truth_ids)})"
        )
    only_in_pred, only_in_truth = _one_sided(aligned_ids, truth_ids, notes)
    return ImageAlignment(
        _rename(pred, renamed) if renamed else pred,
        tuple(notes),
        renamed,
        only_in_pred,
        only_in_truth,
    )


def _by_stem(pred_ids: list[str], truth_ids: list[str]) -> dict[str, str]:
    """Rule 2: predicted id -> the truth id of the same file stem, when unambiguous both ways.

    A predicted id the truth names is left alone; one whose stem (or itself) is the stem of
    exactly one truth id is renamed to it, unless another predicted image already goes by that
    truth id or also claims it.
    """
    truth_set = set(truth_ids)
    by_stem: dict[str, list[str]] = {}
    for t in truth_ids:
        by_stem.setdefault(_stem(t), []).append(t)
    taken = {p for p in pred_ids if p in truth_set}
    wanted: dict[str, list[str]] = {}
    for p in pred_ids:
        if p in truth_set:
            continue
        found = set(by_stem.get(_stem(p), [])) | set(by_stem.get(p, []))
        if len(found) == 1:
            wanted.setdefault(found.pop(), []).append(p)
    return {ps[0]: t for t, ps in wanted.items() if len(ps) == 1 and t not in taken}


def _one_sided(
    aligned_ids: list[str], truth_ids: list[str], notes: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Rule 5: images only the predictions, and only the truth, name; a note for each kind."""
    truth_set = set(truth_ids)
    only_in_pred = tuple(p for p in aligned_ids if p not in truth_set)
    aligned_set = set(aligned_ids)
    only_in_truth = tuple(t for t in truth_ids if t not in aligned_set)
    if only_in_truth:
        notes.append(
            f"{len(only_in_truth)} truth image(s) absent from the predictions "
            f"({format_ids(only_in_truth)}): their true objects count as false negatives"
        )
    if only_in_pred:
        notes.append(
            f"{len(only_in_pred)} pred image(s) absent from the truth "
            f"({format_ids(only_in_pred)}): their predictions count as false positives"
        )
    return only_in_pred, only_in_truth


def _rename(pred: AnnotationSet, renamed: dict[str, str]) -> AnnotationSet:
    anns = [a.with_(image=renamed.get(a.image, a.image)) for a in pred.annotations]
    images = {}
    for key, info in pred.images.items():
        new = renamed.get(key, key)
        images[new] = dataclasses.replace(info, id=new)
    return dataclasses.replace(pred, annotations=anns, images=images)
