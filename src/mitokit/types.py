"""Coordinate conventions, declared once.

All coordinates are level-0 pixels of the slide or image: x = column, y = row, origin top-left (as
QuPath and OpenSlide). Boxes are ``[x1, y1, x2, y2]`` with x1 <= x2 and y1 <= y2. Physical
distances are micrometres, converted with the slide's microns-per-pixel (mpp). Convert other
conventions (row/col centroids, COCO ``[x, y, w, h]``) only at the edges, in the readers.
"""

from __future__ import annotations

from typing import TypeAlias

PointXY: TypeAlias = tuple[float, float]
"""A point (x, y) in level-0 pixels."""

BoxXYXY: TypeAlias = tuple[float, float, float, float]
"""A box (x1, y1, x2, y2) in level-0 pixels."""

SizeWH: TypeAlias = tuple[int, int]
"""A size (width, height) in pixels."""

LocationXY: TypeAlias = tuple[int, int]
"""A top-left corner (x, y) in level-0 pixels."""

MITOSIS = "mitosis"
NON_MITOSIS = "non_mitosis"
CANONICAL_CLASSES = (MITOSIS, NON_MITOSIS)
