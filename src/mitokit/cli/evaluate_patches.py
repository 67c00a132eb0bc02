"""``mitokit evaluate patches``: a patch classifier (or ensemble) on a label file."""

from __future__ import annotations

import click

from mitokit.cli.options import (
    backend_option,
    echo_json,
    json_option,
    model_option,
    path_option,
    strict_option,
    threshold_option,
    tta_option,
)


@click.command("patches")
@model_option(
    multiple=True, help="Model folder; repeat (or give a folder of seed runs) for an ensemble."
)
@path_option(
    "--labels",
    required=True,
    help="Patch label file, or a folder of class sub-folders (Atypical/, Normal/).",
)
@path_option("--images", kind="folder", help="Patch folder (default: beside the label file).")
@path_option(
    "--exclude-ids", help="Leave out the rows this split file lists (e.g. the training split)."
)
@path_option("--only-ids", help="Score only the rows this split file lists.")
@click.option(
    "--positive",
    default=None,
    help="Positive class folder when --labels is a folder of class sub-folders (default: the "
    "one the models were trained with, else a folder named like mitosis).",
)
@tta_option("Average over the four flips.")
@threshold_option(
    "Balanced-accuracy threshold: a number, or 'validation' to choose it (best balanced "
    "accuracy) on the models' own validation rows.",
    type=str,
    default="0.5",
    show_default=True,
)
@path_option("--scores", "scores_out", kind="file", help="Also write the per-patch scores (CSV).")
@backend_option
@json_option
@strict_option
def patches(
    models,
    labels,
    images,
    exclude_ids,
    only_ids,
    positive,
    tta,
    threshold,
    scores_out,
    backend,
    as_json,
) -> None:
    """AUC, balanced accuracy and calibration error of a patch classifier on LABELS."""
    import csv
    import io

    from mitokit.io.atomic import write_text_atomic
    from mitokit.metrics.patches import evaluate_patch_file

    if threshold != "validation":
        try:
            threshold = float(threshold)
        except ValueError:
            raise click.BadParameter(
                f"{threshold!r} is neither a number nor 'validation'", param_hint="--threshold"
            ) from None
    result = evaluate_patch_file(
        models,
        labels,
        images=images,
        exclude_ids=exclude_ids,
        only_ids=only_ids,
        tta=tta,
        threshold=threshold,
        positive=positive,
        backend=backend,
    )
    rows = result.pop("scores")
    if scores_out:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["id", "score", "label", "target"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(scores_out, buf.getvalue())
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{result['n']} patches ({result['n_positive']} {result['positive']}), "
        f"{result['members']} model(s){' + TTA' if tta else ''}"
    )
    click.echo(
        f"AUC {result['auc']:.4f}  balanced accuracy {result['balanced_accuracy']:.4f} "
        f"(threshold {result['threshold']:.3g}"
        f"{' chosen on validation' if result.get('threshold_source') else ''})  "
        f"ECE {result['ece']:.4f} (vs mean vote)"
    )
