"""Experiments: the source papers' comparisons re-run end to end on generated data.

:mod:`mitokit.experiments.synthetic_studies` holds two studies whose answer is known to be
checkable, because the data carry their truth:

- :func:`~mitokit.experiments.synthetic_studies.reg_vs_regns`: tile regression on positive tiles
  only (Reg) against regression with negative sampling (Reg-NS) and tile classification (BC),
  compared at equal true-positive rate (the third paper's question);
- :func:`~mitokit.experiments.synthetic_studies.soft_vs_majority`: a patch classifier trained on
  the pathologists' mean vote against one trained on their majority vote, compared by
  calibration (the first paper's question).

Both return JSON-friendly dicts and write their data, models, tables and figures under one
folder; ``mitokit experiment synthetic ...`` runs them from the command line.
"""

from mitokit.experiments.synthetic_studies import (
    REG_QUICK,
    SOFT_QUICK,
    reg_vs_regns,
    soft_vs_majority,
)

__all__ = ["REG_QUICK", "SOFT_QUICK", "reg_vs_regns", "soft_vs_majority"]
