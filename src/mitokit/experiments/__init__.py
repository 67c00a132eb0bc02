"""Experiments: the source papers' comparisons re-run end to end on generated data.

Every study is a short recipe on one shared harness (:mod:`mitokit.experiments.harness`:
generate the data and the held-out split, train each arm through the engine, evaluate it on the
held-out data, collect the rows, write ``result.json`` and the tables). The studies, whose
answer is checkable because the data carry their truth:

- :func:`~mitokit.experiments.regression_study.reg_vs_regns`: tile regression on positive tiles
  only (Reg) against regression with negative sampling (Reg-NS) and tile classification (BC),
  compared at equal true-positive rate (the third paper's question);
- :func:`~mitokit.experiments.soft_label_study.soft_vs_majority`: a patch classifier trained on
  the pathologists' mean vote against one trained on their majority vote, compared by
  calibration (the first paper's question);
- :func:`~mitokit.experiments.detection_study.det_variants`: Faster R-CNN with and without
  negative sampling and agreement-weighted loss (third paper);
- :func:`~mitokit.experiments.wss_study.aggregation_ablation`: the weak localiser's
  aggregations (second paper).

:mod:`~mitokit.experiments.synthetic_studies` gathers the first two under one import path;
:mod:`~mitokit.experiments.heldout_slides` scores models on held-out generated slides and
:mod:`~mitokit.experiments.point_eval` holds the point-localisation evaluation the localisation
studies and the demo share. Each study returns a JSON-friendly dict and writes its data, models,
tables and figures under one folder; ``mitokit experiment synthetic ...`` runs them from the
command line. The library core never imports this package (a test checks it).
"""

from mitokit.experiments.synthetic_studies import (
    REG_QUICK,
    SOFT_QUICK,
    reg_vs_regns,
    soft_vs_majority,
)

__all__ = ["REG_QUICK", "SOFT_QUICK", "reg_vs_regns", "soft_vs_majority"]
