"""Two of the source papers' comparisons on generated data whose truth is known (one import path).

:func:`reg_vs_regns` (third paper, Tables 4-7; :mod:`~mitokit.experiments.regression_study`):
does regressing the crowd tile score with negative sampling (Reg-NS) give a lower false-positive
rate than regressing it on positive tiles only (Reg) at the same true-positive rate? Tile
classification (BC) runs beside them.

:func:`soft_vs_majority` (first paper; :mod:`~mitokit.experiments.soft_label_study`): does a
patch classifier trained on the pathologists' mean vote (soft labels) have a lower calibration
error than one trained on their majority vote?

Both run on the shared harness (:mod:`~mitokit.experiments.harness`): each generates its data
(training set and a held-out test set from a different seed), trains every model through
:func:`mitokit.engines.train`, predicts on the held-out images only, and returns a JSON-friendly
dict; ``out_dir`` receives the data, the runs, ``result.json``, the tables as CSV and the figures.
Nothing is tuned towards an expected answer: the settings are the arguments, recorded in the
result.

Speed: the defaults are a small but meaningful run (a few minutes each on one CPU core);
:data:`REG_QUICK` and :data:`SOFT_QUICK` are the ``--quick`` settings (under two minutes each;
``mitokit demo --quick`` runs :data:`REG_QUICK`, the full demo the defaults); ``scale``
multiplies the amount of generated data for bigger runs. On a machine whose cores are already
busy, PyTorch's default of one thread per core can slow training down many times over; pass
``threads=1`` there.
"""

from __future__ import annotations

from mitokit.experiments.harness import HELDOUT_SEED_OFFSET, Say, prune_run, torch_threads
from mitokit.experiments.regression_study import (
    FIXED_TPRS,
    REG_QUICK,
    THRESHOLDS,
    method_name,
    reg_vs_regns,
)
from mitokit.experiments.soft_label_study import SOFT_QUICK, soft_vs_majority

__all__ = [
    "FIXED_TPRS",
    "HELDOUT_SEED_OFFSET",
    "REG_QUICK",
    "SOFT_QUICK",
    "THRESHOLDS",
    "Say",
    "method_name",
    "prune_run",
    "reg_vs_regns",
    "soft_vs_majority",
    "torch_threads",
]
