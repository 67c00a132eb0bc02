"""Synthetic H&E scenes with known mitosis truth.

Every cell has a latent mitosis score ``m`` in [0, 1] that drives how it looks; labels of every
kind the papers used are drawn from that truth through simulated people.

- :mod:`~mitokit.data.synthetic.cells`: the truth table (:class:`CellTable`);
- :mod:`~mitokit.data.synthetic.scene`: tissue layout and cell sampling (:class:`SceneParams`),
  with :mod:`~mitokit.data.synthetic.packing` (nuclei that touch but rarely overlap);
- :mod:`~mitokit.data.synthetic.render`: Beer-Lambert H&E rendering (:func:`render_region`,
  :func:`render_cell`, :class:`StainParams`), gathered from
  :mod:`~mitokit.data.synthetic.staining` (stain, light, blur, noise),
  :mod:`~mitokit.data.synthetic.cell_shapes` (a cell's outline and mitotic figure),
  :mod:`~mitokit.data.synthetic.stamp` (a cell's densities by kind and ``m``),
  :mod:`~mitokit.data.synthetic.region` (background and boxes of a scene) and
  :mod:`~mitokit.data.synthetic.single_cell` (one cell centred in a patch);
- :mod:`~mitokit.data.synthetic.generate`: patches, tiles and pyramidal whole slides;
- :mod:`~mitokit.data.synthetic.labelling`: every label kind of one scene
  (:func:`label_scene`), gathered from :mod:`~mitokit.data.synthetic.pathologists`,
  :mod:`~mitokit.data.synthetic.consensus` (consensus, centroids, image-level presence),
  :mod:`~mitokit.data.synthetic.crowd` (crowd boxes and agreement) and
  :mod:`~mitokit.data.synthetic.label_sets` (the labels as annotation sets);
- :mod:`~mitokit.data.synthetic.export`: datasets on disk in real formats, with a manifest;
- :mod:`~mitokit.data.synthetic.montage`: cells sorted by ``m`` beside real ones.
"""

from mitokit.data.synthetic.cells import CellTable
from mitokit.data.synthetic.generate import (
    PatchBatch,
    SyntheticSlide,
    SyntheticTile,
    generate_patches,
    generate_tiles,
    write_synthetic_slide,
)
from mitokit.data.synthetic.labelling import CrowdPanel, RaterPanel, label_scene
from mitokit.data.synthetic.render import StainParams, render_cell, render_region
from mitokit.data.synthetic.scene import SceneParams, sample_cells

__all__ = [
    "CellTable",
    "CrowdPanel",
    "PatchBatch",
    "RaterPanel",
    "SceneParams",
    "StainParams",
    "SyntheticSlide",
    "SyntheticTile",
    "generate_patches",
    "generate_tiles",
    "label_scene",
    "render_cell",
    "render_region",
    "sample_cells",
    "write_synthetic_slide",
]
