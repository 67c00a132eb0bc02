"""Slides and annotations in, in the formats of the field."""

from mitokit.io.annotations import (
    Annotation,
    AnnotationSet,
    ImageInfo,
    Vote,
    canonical_class,
    read_annotations,
    write_annotations,
)
from mitokit.io.slides import Slide, open_slide

__all__ = [
    "Annotation",
    "AnnotationSet",
    "ImageInfo",
    "Slide",
    "Vote",
    "canonical_class",
    "open_slide",
    "read_annotations",
    "write_annotations",
]
