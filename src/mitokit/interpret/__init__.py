"""Interpretation with the conditional diffusion model: transitions and counterfactuals.

- :mod:`~mitokit.interpret.sampling`: the sampling loop written out (DDPM, DDIM, DPM-Solver),
  DDIM inversion;
- :mod:`~mitokit.interpret.noise`: per-chain noise keys and the coupled noise of strided steps;
- :mod:`~mitokit.interpret.transitions`: sets of cells generated along a range of conditions,
  scored by the patch-classifier ensemble (:func:`generate_transitions`);
- :mod:`~mitokit.interpret.counterfactual`: real cells taken part-way into the diffusion and
  brought back as mitoses, with their likeness index (:func:`counterfactual`);
- :mod:`~mitokit.interpret.outputs`: the output folders (:func:`write_transitions`,
  :func:`write_counterfactuals`);
- :mod:`~mitokit.interpret.selection`: score curves, good sets, likeness index (numpy only);
- :mod:`~mitokit.interpret.figures`: image grids and the score-vs-condition curve.

The model is trained with the ``diffusion`` task (:mod:`mitokit.models.diffusion`).
"""

from mitokit.interpret.counterfactual import Counterfactuals, counterfactual, write_counterfactuals
from mitokit.interpret.selection import (
    curve_stats,
    good_sets,
    likeness_curves,
    likeness_index,
    parse_grid,
)
from mitokit.interpret.transitions import (
    Transitions,
    generate_transitions,
    score_images,
    score_transitions,
    write_transitions,
)

__all__ = [
    "Counterfactuals",
    "Transitions",
    "counterfactual",
    "curve_stats",
    "generate_transitions",
    "good_sets",
    "likeness_curves",
    "likeness_index",
    "parse_grid",
    "score_images",
    "score_transitions",
    "write_counterfactuals",
    "write_transitions",
]
