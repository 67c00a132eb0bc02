"""Torch datasets: cell patches with targets, and tiles with boxes and tile scores.

Both return dicts whose ``"image"`` is a float ``CxHxW`` tensor in [0, 1]. A ``transform`` gets
the ``HxWx3`` uint8 array first (stain normalisation, :class:`~mitokit.data.stain.HEDJitter`, any
function of an array) and may return a uint8 array, a float array in [0, 1], or a ready
``CxHxW`` tensor. In :class:`TileDataset` the transform must not move pixels (colour only), since
the boxes are not transformed with it.

:class:`TileDataset` follows the detection contract of the project (torchvision's): per tile a
dict with ``boxes`` ``FloatTensor[K, 4]`` tile-local xyxy, ``labels`` int64 and ``weights``; a
tile without objects gives tensors of shape ``(0, 4)`` and ``(0,)``. Use
:func:`collate_detection` as the DataLoader's ``collate_fn``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mitokit.data.arrays import as_slide, read_rgb
from mitokit.data.tiling import Tile, as_tiles
from mitokit.errors import input_error
from mitokit.io.annotations import Annotation, AnnotationSet
from mitokit.labels.coarsen import box_fraction_inside
from mitokit.types import MITOSIS

Transform = Callable[[np.ndarray], Any]


def to_tensor(image: Any) -> torch.Tensor:
    """An image (uint8 or [0, 1] float ``HxWx3`` array, or a ``CxHxW`` tensor) as a float tensor.

    Raises:
        MitokitError: Another shape or dtype.
    """
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise input_error(None, f"expected a CxHxW tensor, got shape {tuple(image.shape)}")
        return image if image.is_floating_point() else image.float() / 255.0
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise input_error(None, f"expected an HxWxC image, got shape {arr.shape}")
    if not arr.flags.writeable:  # e.g. an array over Pillow's buffer: torch wants to own it
        arr = arr.copy()
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
    else:
        raise input_error(None, f"expected a uint8 or float image, got {arr.dtype}")
    return t.contiguous()


class PatchDataset(Dataset):
    """Patches (cell-centred crops) with per-patch targets.

    Args:
        images: ``(N, H, W, 3)`` uint8 array, or a list of image paths (read with Pillow on
            access).
        targets: Named per-patch values, each of length N (for example ``label``, ``score``).
            Numeric values come back as tensors (float32 for floats, int64 for integers and
            booleans), others as they are.
        transform: Applied to the ``HxWx3`` uint8 patch before it becomes a tensor.
        cache: Decode every patch file once, here, and keep the pixels in memory (read-only),
            so no epoch decodes again; loader workers forked later share them. For patch sets
            that fit in memory and are read for many epochs, such as a diffusion model's.

    Items are dicts: ``image`` (float ``CxHxW`` in [0, 1]), ``index`` (int) and one entry per
    target.

    Raises:
        MitokitError: Wrong image array shape or dtype, or a target of the wrong length.
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[str | os.PathLike],
        targets: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
        *,
        transform: Transform | None = None,
        cache: bool = False,
    ) -> None:
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
                raise input_error(
                    None,
                    f"patch images must be (N, H, W, 3) uint8, got {images.dtype} {images.shape}",
                )
            self._array: np.ndarray | None = images
            self._paths: list[str] | None = None
            n = images.shape[0]
        else:
            self._array = None
            self._paths = [os.fspath(p) for p in images]
            n = len(self._paths)
        self.targets: dict[str, np.ndarray] = {}
        for key, values in (targets or {}).items():
            if key in ("image", "index"):
                raise input_error(None, f"target name {key!r} is reserved")
            arr = np.asarray(values)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise input_error(
                    None,
                    f"target {key!r} has {arr.shape[0] if arr.ndim else 0} values for {n} patches",
                )
            self.targets[key] = arr
        self.transform = transform
        self._n = n
        self._cache: list[np.ndarray] | None = None
        if cache and self._paths is not None:
            self._cache = [read_rgb(p) for p in self._paths]
            for img in self._cache:
                img.setflags(write=False)

    def __len__(self) -> int:
        return self._n

    def image(self, index: int) -> np.ndarray:
        """The raw ``HxWx3`` uint8 patch ``index``."""
        if self._array is not None:
            return self._array[index]
        if self._cache is not None:
            return self._cache[index]
        return read_rgb(self._paths[index])  # type: ignore[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not (-self._n <= index < self._n):
            raise IndexError(f"patch index {index} out of range for {self._n} patches")
        index = index % self._n
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img)
        item: dict[str, Any] = {"image": to_tensor(img), "index": index}
        for key, values in self.targets.items():
            item[key] = _target_value(values[index])
        return item


def _target_value(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return torch.as_tensor(arr.astype(np.int64))
    if np.issubdtype(arr.dtype, np.floating):
        return torch.as_tensor(arr.astype(np.float32))
    return value


class TileDataset(Dataset):
    """Tiles of slides or images with their objects, box weights and tile score.

    For each tile, the objects of class ``label`` on its image that overlap it become
    tile-local boxes (point objects get a square of side ``point_box_size``), clipped to the
    tile; their weight is the object's agreement (``default_agreement`` when it has none). The
    tile score is ``s_t = sum_i r_i * a_i`` over those objects, with ``r_i`` the fraction of box
    ``i``'s area inside the tile and ``a_i`` its agreement; ``tile_label`` is ``s_t > 0``.

    Boxes of tiles read from a level above 0 are divided by the level's downsample, so they are
    in the pixels of the returned image.

    Args:
        tiles: :class:`~mitokit.data.tiling.Tile` records with an image id, or
            ``(image_id, [x1, y1, x2, y2])`` pairs (level 0).
        open_image: Returns the slide (or ``HxWx3`` array) of an image id; each image is opened
            once per dataset copy (so once per DataLoader worker) and kept.
        annotations: Objects of the images.
        transform: Colour transform of the ``HxWx3`` uint8 tile (see the module docstring).
        point_box_size: Side of the square around point objects, in level-0 pixels.
        label: Class of the objects that become boxes and count for the score.
        default_agreement: Agreement of objects that carry none.
        min_box_fraction: A box becomes a detection target only when more than this fraction of
            it lies inside the tile (it still counts for ``s_t``).

    Items are dicts: ``image`` (float ``CxHxW``), ``boxes`` (float32 ``[K, 4]``), ``labels``
    (int64 ``[K]``, 1 = mitosis), ``weights`` (float32 ``[K]``), ``tile_score`` (float32
    scalar), ``tile_label`` (int64 scalar), ``image_id`` (str), ``tile`` (int64 ``[4]``, the
    level-0 box) and ``index`` (int).
    """

    def __init__(
        self,
        tiles: Iterable[Tile | tuple[str, Sequence[float]]],
        open_image: Callable[[str], Any],
        annotations: AnnotationSet | Iterable[Annotation],
        *,
        transform: Transform | None = None,
        point_box_size: float = 50.0,
        label: str = MITOSIS,
        default_agreement: float = 1.0,
        min_box_fraction: float = 0.0,
    ) -> None:
        if not (math.isfinite(point_box_size) and point_box_size >= 0):
            raise input_error(None, f"point_box_size must be >= 0, got {point_box_size}")
        if not (0.0 <= min_box_fraction < 1.0):
            raise input_error(None, f"min_box_fraction must be in [0, 1), got {min_box_fraction}")
        if not math.isfinite(default_agreement):
            raise input_error(None, f"default_agreement must be finite, got {default_agreement}")
        self.tiles = as_tiles(tiles)
        self.open_image = open_image
        self.transform = transform
        self.point_box_size = float(point_box_size)
        self.label = label
        self.min_box_fraction = float(min_box_fraction)
        boxes: dict[str, list] = {}
        agree: dict[str, list] = {}
        for ann in annotations:
            if ann.label != label:
                continue
            boxes.setdefault(ann.image, []).append(ann.box_or_square(self.point_box_size))
            agree.setdefault(ann.image, []).append(
                default_agreement if ann.agreement is None else ann.agreement
            )
        self._boxes = {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in boxes.items()}
        self._agree = {k: np.asarray(v, dtype=np.float64) for k, v in agree.items()}
        self._open: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.tiles)

    def _slide(self, image_id: str) -> Any:
        if image_id not in self._open:
            self._open[image_id] = as_slide(self.open_image(image_id), name=image_id)
        return self._open[image_id]

    def target(self, index: int) -> dict[str, Any]:
        """The item of tile ``index`` without reading pixels (boxes, weights, score ...)."""
        tile = self.tiles[index]
        x1, y1, x2, y2 = (float(v) for v in tile.box)
        objs = self._boxes.get(str(tile.image), np.zeros((0, 4)))
        agree = self._agree.get(str(tile.image), np.zeros(0))
        r = box_fraction_inside(objs, np.array([[x1, y1, x2, y2]]))[0]
        score = float(np.dot(r, agree))
        keep = (r > self.min_box_fraction) & (r > 0)
        local = (objs[keep] - np.array([x1, y1, x1, y1])) / tile.downsample
        local[:, [0, 2]] = np.clip(local[:, [0, 2]], 0, tile.w)
        local[:, [1, 3]] = np.clip(local[:, [1, 3]], 0, tile.h)
        k = int(keep.sum())
        return {
            "boxes": torch.as_tensor(local, dtype=torch.float32).reshape(k, 4),
            "labels": torch.ones(k, dtype=torch.int64),
            "weights": torch.as_tensor(agree[keep], dtype=torch.float32).reshape(k),
            "tile_score": torch.tensor(score, dtype=torch.float32),
            "tile_label": torch.tensor(int(score > 0), dtype=torch.int64),
            "image_id": str(tile.image),
            "tile": torch.tensor([round(v) for v in (x1, y1, x2, y2)], dtype=torch.int64),
            "index": index,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not (-len(self) <= index < len(self)):
            raise IndexError(f"tile index {index} out of range for {len(self)} tiles")
        index = index % len(self)
        tile = self.tiles[index]
        pixels = tile.read(self._slide(str(tile.image)))
        if self.transform is not None:
            pixels = self.transform(pixels)
        return {"image": to_tensor(pixels), **self.target(index)}


def collate_detection(
    batch: Sequence[dict[str, Any]],
) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Collate :class:`TileDataset` items into ``(images, targets)`` lists for a detector."""
    images = [item["image"] for item in batch]
    targets = [{k: v for k, v in item.items() if k != "image"} for item in batch]
    return images, targets


__all__ = ["PatchDataset", "TileDataset", "Transform", "collate_detection", "to_tensor"]
