"""The diffusion stage's report section (:mod:`mitokit.demo.diffusion`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mitokit.demo.diffusion import (
    FIRST_BELOW,
    LAST_ABOVE,
    LIKENESS,
    MAX_STEP,
    DiffusionSettings,
    epochs_text,
)
from mitokit.report import HtmlReport


def write_report(
    report: HtmlReport,
    *,
    st: DiffusionSettings,
    run: dict[str, Any],
    train_s: float,
    tr: dict[str, Any],
    cf: dict[str, Any],
    labels: tuple[float, float],
) -> None:
    """The stage's report section (``labels``: shares of the labels at 0 and at 1)."""
    report.section("Conditional diffusion: transitions and counterfactuals")
    _model_section(report, st=st, run=run, train_s=train_s)
    _transitions_section(report, run=run, tr=tr, labels=labels)
    _counterfactuals_section(report, run=run, cf=cf)


def _model_section(
    report: HtmlReport, *, st: DiffusionSettings, run: dict[str, Any], train_s: float
) -> None:
    """The model, its training, and what a model this small can show."""
    losses = run["train_loss"]
    size = int(run["model"].sample_size)
    report.paragraph(
        f"A tiny conditional diffusion model (the first paper's formulation: a diffusers UNet "
        f"with a learned embedding of the continuous condition c and a null condition for "
        f"classifier-free guidance, weights averaged over steps) with {run['params']:,} weights, "
        f"trained through the engine at {size} px on "
        f"{run['n_train'] if run['n_train'] is not None else 'the'} synthetic patches above for "
        f"{epochs_text(st.epochs)} ({train_s:.0f} s on this CPU), conditioned on each cell's "
        "probabilistic label: its mean rater vote. Training loss (MSE on the noise) "
        f"{losses[0]:.3f} in the first epoch, {losses[-1]:.3f} in the last."
    )
    report.paragraph(
        "A model this small, trained for minutes on a CPU, draws blurry cells: this section "
        "demonstrates the pipeline (training, transitions, scoring, selection, counterfactuals, "
        "likeness), not the image quality of the paper's 64-pixel model trained for hours on "
        "GPUs. The scores come from the patch-classifier ensemble above, which never saw "
        "generated cells.",
        note=True,
    )


def _transitions_section(
    report: HtmlReport, *, run: dict[str, Any], tr: dict[str, Any], labels: tuple[float, float]
) -> None:
    """The transition sets: curve, good-set rule, figures."""
    c = tr["curve"]
    report.paragraph(
        f"Transitions: {tr['n_sets']} sets, each one starting noise (and one sequence of "
        f"per-step noise) denoised at c = 0, 0.1, ..., 1 ({_sampler(tr)}; {tr['seconds']:.0f} s)."
        f" Mean ensemble score {_f(c['mean'][0])} at c = 0 and {_f(c['mean'][-1])} at c = 1 "
        f"(median {_f(c['median'][0])} and {_f(c['median'][-1])}). Good sets (first score < "
        f"{FIRST_BELOW}, last > {LAST_ABOVE}, every step < {MAX_STEP}): {tr['n_good_sets']} of "
        f"{tr['n_sets']}, a yield of {100 * tr['good_set_yield']:.1f}%."
    )
    if tr["scheduler"] == "ddpm":
        report.paragraph(
            f"The sampler is DDPM over {tr['steps']} of the {run['model'].num_train_timesteps} "
            f"timesteps (as many network calls as DDIM-{tr['steps']}): the deterministic "
            "samplers, DDIM and DPM-Solver, drew grey, noise-like cells from a model trained "
            "this briefly, while DDPM's per-step noise corrects its errors."
        )
    report.table(
        _rule_rows(tr["scores"], tr["conditions"]),
        header=["criterion", "sets", "share"],
        caption="The good-set rule criterion by criterion (a good set meets all three).",
    )
    if tr["grids"]:
        report.image(
            tr["grids"][0],
            caption="Transition sets: rows = sets (same noise), columns = conditions; the "
            "ensemble's score under each cell, good sets' labels in green.",
        )
    report.image(
        tr["folder"] / "curve.png",
        caption="Ensemble score vs condition: mean with its standard-error band, median dashed.",
    )
    if tr["n_good_sets"]:
        report.image(tr["folder"] / "selected.png", caption="The good sets.")
    else:
        text = "No set met the good-set rule, so there is no figure of them."
        smooth = np.all(np.abs(np.diff(tr["scores"], axis=1)) < MAX_STEP, axis=1)
        if smooth.mean() < 0.5:
            text += (
                " Most sets change in one large step (the table above) rather than rising "
                f"steadily: {100 * labels[0]:.0f}% of the labels above are 0 and "
                f"{100 * labels[1]:.0f}% are 1, so the conditions in between were learned "
                "from few cells."
            )
        report.paragraph(text)
    report.link(tr["folder"] / "curve.csv", "diffusion/transitions/curve.csv (the curve)")
    report.link(
        tr["folder"] / "summary.json", "diffusion/transitions/summary.json (settings, good sets)"
    )


def _counterfactuals_section(
    report: HtmlReport, *, run: dict[str, Any], cf: dict[str, Any]
) -> None:
    """The counterfactuals of negative cells and their likeness index."""
    li = cf["likeness"]
    t_grid = cf["t_grid"]
    report.paragraph(
        f"Counterfactuals: {len(cf['ids'])} real cells with a low label (mean vote <= 0.1 where "
        f"there are enough; cells the model trained on) noised forward to t = "
        f"{', '.join(str(t) for t in t_grid)} of {run['model'].num_train_timesteps} steps and "
        f"denoised with c = 1 ({_sampler(cf)}). The likeness index is the earliest t "
        f"at which the ensemble scores the counterfactual >= {LIKENESS[0]} (resembles a "
        f"mitosis) and >= {LIKENESS[1]} (convincing); empty when never reached. "
        f"{cf['n_resembles']} of {len(cf['ids'])} cells reach {LIKENESS[0]}, "
        f"{cf['n_convincing']} reach {LIKENESS[1]}."
    )
    report.image(
        cf["folder"] / "all_cells.png",
        caption="One row per cell: the input, then its counterfactual at each t, scored.",
    )
    rows = [
        [
            oid,
            float(lab),
            float(cf["scores"][i, 0]),
            _t(li[i, 0]),
            _t(li[i, 1]),
        ]
        for i, (oid, lab) in enumerate(zip(cf["ids"], cf["label_scores"], strict=True))
    ]
    report.table(
        rows,
        header=[
            "cell",
            "label (mean vote)",
            f"score at t={int(t_grid[0])}",
            f"t (score >= {LIKENESS[0]})",
            f"t (score >= {LIKENESS[1]})",
        ],
        caption="Likeness index per cell (- : never reached on this grid).",
        digits=2,
    )
    report.link(cf["folder"] / "likeness.csv", "diffusion/counterfactuals/likeness.csv")
    report.paragraph(
        "`mitokit train configs/diffusion.yaml` and `mitokit generate transitions` / "
        "`mitokit generate counterfactual` run the same steps at the paper's scale.",
        note=True,
    )


def _rule_rows(scores: np.ndarray, conditions: list[float]) -> list[list[Any]]:
    """Rows of the good-set table: how many sets meet each criterion of the rule."""
    from mitokit.interpret.selection import good_set_criteria

    s = np.asarray(scores, dtype=np.float64)
    steps = np.abs(np.diff(s, axis=1))
    passes = good_set_criteria(s, first_below=FIRST_BELOW, last_above=LAST_ABOVE, max_step=MAX_STEP)
    meets = {
        f"first score < {FIRST_BELOW}": passes["first_below"],
        f"last score > {LAST_ABOVE}": passes["last_above"],
        f"every step < {MAX_STEP}": passes["max_step"],
        "all three: good sets": passes["all"],
    }
    n = len(s)
    rows: list[list[Any]] = [[k, int(v.sum()), float(v.mean())] for k, v in meets.items()]
    where = np.bincount(steps.argmax(axis=1), minlength=steps.shape[1])
    k = int(where.argmax())
    rows.append(
        [
            f"largest step between c = {conditions[k]:g} and {conditions[k + 1]:g}",
            int(where[k]),
            float(where[k] / n),
        ]
    )
    return rows


def _sampler(summary: dict[str, Any]) -> str:
    """``DDPM, 25 steps, classifier-free guidance 3``."""
    text = f"{summary['scheduler'].upper()}, {summary['steps']} steps"
    if summary["guidance"] != 1:
        text += f", classifier-free guidance {summary['guidance']:g}"
    return text


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _t(value: float) -> str:
    return str(int(value)) if np.isfinite(value) else "-"


__all__ = ["write_report"]
