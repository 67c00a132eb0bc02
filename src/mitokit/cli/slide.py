"""``mitokit slide``: look into slides and images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from mitokit.cli.options import echo_json, json_option, mpp_option


@click.group()
def slide() -> None:
    """Inspect whole-slide images and plain images."""


@slide.command("info")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=True))
@mpp_option
@json_option
def info(path: Path, mpp: float | None, as_json: bool) -> None:
    """Print the backend, format, levels and microns per pixel of PATH."""
    from mitokit.io.slides import open_slide

    with open_slide(path, mpp=mpp) as opened:
        summary = slide_summary(opened)
    if as_json:
        echo_json(summary)
        return
    click.echo(_format_summary(summary))


def slide_summary(opened: Any) -> dict[str, Any]:
    """The facts ``slide info`` reports about an open slide, as a JSON-ready dict."""
    width, height = opened.dimensions
    return {
        "path": os.fspath(opened.path),
        "backend": opened.backend,
        "vendor": opened.vendor,
        "width": width,
        "height": height,
        "level_count": opened.level_count,
        "levels": [
            {"width": w, "height": h, "downsample": round(d, 6)}
            for (w, h), d in zip(opened.level_dimensions, opened.level_downsamples, strict=True)
        ],
        "mpp": opened.mpp_or_none,
        "mpp_source": opened.mpp_source,
        "objective_power": opened.objective_power,
        "file_size": opened.path.stat().st_size,
    }


def _format_summary(summary: dict[str, Any]) -> str:
    mpp = summary["mpp"]
    mpp_text = (
        "unknown: pass --mpp" if mpp is None else f"{mpp:.6g} um/px ({summary['mpp_source']})"
    )
    power = summary["objective_power"]
    lines = [
        f"path:       {summary['path']}",
        f"backend:    {summary['backend']}",
        f"format:     {summary['vendor']}",
        f"size:       {summary['width']} x {summary['height']} px (level 0)",
        f"mpp:        {mpp_text}",
        f"objective:  {'unknown' if power is None else f'{power:g}x'}",
        f"file size:  {_human_bytes(summary['file_size'])}",
        f"levels:     {summary['level_count']}",
    ]
    for index, level in enumerate(summary["levels"]):
        lines.append(
            f"  {index:>2}: {level['width']:>7} x {level['height']:<7} "
            f"downsample {level['downsample']:g}"
        )
    return "\n".join(lines)


def _human_bytes(size: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {units[unit]} ({size} B)"
