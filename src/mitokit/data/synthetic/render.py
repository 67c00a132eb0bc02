"""Render synthetic H&E images through Beer-Lambert haematoxylin and eosin optical densities.

Public API:

- :class:`StainParams`: the stain and acquisition of one image: haematoxylin (H) and eosin (E)
  optical-density unit vectors and intensity scales, the light through glass, blur and sensor
  noise. :meth:`StainParams.sample` varies them per image around H&E vectors measured (Macenko)
  on real breast-cancer H&E.
- :func:`render_region`: the ``(h, w, 3)`` uint8 RGB of a box of a scene, from its
  :class:`~mitokit.data.synthetic.cells.CellTable` and its seed.
- :func:`render_cell`: one cell of a given kind, phase and latent mitosis score ``m`` centred
  in a patch, with ordinary neighbours and stroma from the same seed; the same seed with another
  ``m`` gives the same cell, more or less mitotic.
- :func:`cell_scene`: the scene :func:`render_cell` draws (cells, box, layout, stain).
- :func:`nucleus_masks`: the true nuclear masks of a box as a label image (cell index + 1).
- :func:`optical_density`: per-pixel H and E densities of an RGB image by colour deconvolution
  with the image's own stain vectors (the inverse of the rendering, for tests and analysis).

How a scene is composed (all in optical density, summed, so the order of cells never matters):
eosin stroma with wavy collagen fibres and purple-pink granular tumour cytoplasm in nests
(:class:`~mitokit.data.synthetic.scene.TissueField`), thin retraction clefts at nest borders;
then each cell stamped in a small window around it from its own seed: the nucleus (its outline
as a signed distance, its chromatin as a density times a texture), and for mitoses a clearer cell
body, for apoptotic bodies a dense pink shrunken cytoplasm in a clear halo. Finally
``RGB = light * exp(-(h * OD_H + e * OD_E))``, a slight Gaussian blur and sensor noise.

What ``m`` does (continuously, for every cell kind; the mitotic shape only for mitotic cells):
chromatin darker and denser (mean nuclear H OD from ~0.9 to ~3); the vesicular interphase
pattern (dark rim, pale centre, nucleoli) gives way to solid, at mid ``m`` granular, chromatin
with a darker core; the edge sharpens (ramp width 2.8 -> 1.3 px); the cell body clears. For
mitotic cells the outline morphs from the cell's interphase ellipse to its phase's figure:
prophase a round, ragged nucleus of condensed threads; metaphase a dense, knobby, hairy-edged
bar; anaphase two parallel bars separating with ``m``; telophase two compact masses far apart in
a pinched cell body. Imposters keep a low ``m`` but look the part by kind: apoptotic bodies are
small, very dark, round and smooth in a shrunken pink cytoplasm with a clear halo;
hyperchromatic nuclei are large, dark, round-oval and coarse, with an intact rim.

Every background field is hashed from ``(seed, global pixel coordinates)``, and every cell is
drawn from its own seed in global coordinates, so a box renders the same whether it is asked for
whole or in pieces: a slide written tile by tile has no seams.

Where each part lives: :mod:`~mitokit.data.synthetic.staining` (stain vectors, Beer-Lambert,
colour deconvolution), :mod:`~mitokit.data.synthetic.cell_shapes` (a cell's hashed attributes,
outline and mitotic figure), :mod:`~mitokit.data.synthetic.stamp` (a cell's densities by kind
and ``m``), :mod:`~mitokit.data.synthetic.region` (background and boxes of a scene) and
:mod:`~mitokit.data.synthetic.single_cell` (one cell centred in a patch). This module gathers
their public names.
"""

from mitokit.data.synthetic.region import nucleus_masks, render_region
from mitokit.data.synthetic.single_cell import cell_scene, render_cell
from mitokit.data.synthetic.staining import E_REFERENCE, H_REFERENCE, StainParams, optical_density

__all__ = [
    "E_REFERENCE",
    "H_REFERENCE",
    "StainParams",
    "cell_scene",
    "nucleus_masks",
    "optical_density",
    "render_cell",
    "render_region",
]
