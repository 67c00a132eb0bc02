"""``mitokit labels``: summarise and convert annotation files."""

from __future__ import annotations

import click

from mitokit.cli.options import (
    choice_option,
    echo_json,
    json_option,
    mpp_option,
    path_option,
    strict_option,
)

_FORMAT_HELP = "Input format; detected from the content when not given."


@click.group()
def labels() -> None:
    """Label files: summaries, agreement, conversion."""


@labels.command("summary")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", default=None, help=_FORMAT_HELP)
@click.option("--bins", default=10, show_default=True, help="Bins of the score histogram.")
@choice_option(
    "--repeats",
    choices=["pool", "rater_mean"],
    default="pool",
    help="Repeated ratings of one object by one rater: count each, or average per rater first.",
)
@choice_option(
    "--level",
    choices=["nominal", "ordinal", "interval"],
    default="nominal",
    help="Krippendorff's alpha level of measurement.",
)
@path_option(
    "--figure", kind="file", help="Also save the score distribution by number of votes (PNG)."
)
@json_option
@strict_option
def summary(files, fmt, bins, repeats, level, figure, as_json) -> None:
    """Summarise one or more label FILES (merged): images, classes, raters, votes, agreement."""
    from mitokit.io.annotations import AnnotationSet, read_annotations
    from mitokit.labels import plot_score_distribution, summarize

    sets = [read_annotations(f, format=fmt) for f in files]
    merged = sets[0] if len(sets) == 1 else AnnotationSet.merge(sets)
    result = summarize(merged, bins=bins, repeats=repeats, level=level)
    result["files"] = list(files)
    if figure:
        if not any(a.votes for a in merged):
            from mitokit.errors import input_error

            raise input_error(files[0], "no per-rater votes: no score-distribution figure")
        plot_score_distribution(merged, figure, repeats=repeats)
        result["figure"] = figure
    if as_json:
        echo_json(result)
        return
    _print_summary(result)


def _print_summary(r: dict) -> None:
    click.echo(f"files:      {', '.join(r['files'])}  ({r['format']})")
    click.echo(f"images:     {r['images']} ({r['annotated_images']} with objects)")
    click.echo(f"objects:    {r['objects']}")
    for name, count in r["classes"].items():
        click.echo(f"  {name:<20} {count}")
    click.echo(f"raters:     {r['raters']}")
    if r["majority"]:
        vpo = ", ".join(f"{k}: {v}" for k, v in r["votes_per_object"].items())
        click.echo(f"votes/object: {vpo}")
        click.echo(f"majority ({r['vote_target']}): {r['majority']}")
        click.echo(f"unanimous: {r['unanimous']}")
    click.echo(f"agreement:  {r['agreement_text']}")
    h = r["score_histogram"]
    click.echo(f"scores ({r['scored_objects']} objects): {h['counts']}")
    if r.get("figure"):
        click.echo(f"figure:     {r['figure']}")


@labels.command("convert")
@click.argument("src", type=click.Path())
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--in-format", default=None, help=_FORMAT_HELP)
@choice_option(
    "--out-format",
    choices=["geojson", "csv", "coco", "gc_points"],
    help="Output format; from DST's extension when not given (.geojson, .csv, .json). "
    "gc_points: Grand-Challenge points in mm (MIDOG), one image, needs an mpp.",
)
@click.option(
    "--image",
    default=None,
    help="Keep only the objects of this image (QuPath: one file per image).",
)
@mpp_option
@strict_option
def convert(src, dst, in_format, out_format, image, mpp) -> None:
    """Convert label file SRC to DST (QuPath GeoJSON, CSV, COCO JSON or Grand-Challenge points).

    --mpp converts Grand-Challenge points (millimetres, MIDOG) from and to pixels.
    """
    from mitokit.io.annotations import read_annotations, write_annotations

    data = read_annotations(src, format=in_format, hints={"mpp": mpp})
    if image is not None:
        if image not in data.images and not any(a.image == image for a in data):
            from mitokit.errors import input_error

            raise input_error(src, f"no image {image!r} in the file")
        data = data.filter(image=image)
    write_annotations(data, dst, format=out_format, hints={"mpp": mpp})
    click.echo(f"wrote {len(data)} objects to {dst}", err=True)
