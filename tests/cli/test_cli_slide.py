"""``mitokit slide info``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.io.tiffwrite import write_pyramidal_tiff


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    image = np.full((600, 800, 3), 200, np.uint8)
    image[100:200, 300:500] = (180, 40, 90)
    path = tmp_path_factory.mktemp("cli") / "slide.tif"
    return write_pyramidal_tiff(path, image, mpp=0.25, tile_size=128, compression="deflate")


def test_info_json(pyramid):
    result = CliRunner().invoke(cli, ["slide", "info", str(pyramid), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["path"] == str(pyramid)
    assert info["backend"] == "openslide"
    assert info["vendor"] == "generic-tiff"
    assert (info["width"], info["height"]) == (800, 600)
    assert info["level_count"] == len(info["levels"]) == 4
    assert info["levels"][1] == {"width": 400, "height": 300, "downsample": 2.0}
    assert info["mpp"] == pytest.approx(0.25)
    assert info["file_size"] == pyramid.stat().st_size


def test_info_text_and_mpp_override(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint8), photometric="rgb")
    runner = CliRunner()
    result = runner.invoke(cli, ["slide", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "tifffile" in result.stdout
    assert "50 x 40" in result.stdout
    assert "unknown: pass --mpp" in result.stdout
    result = runner.invoke(cli, ["slide", "info", str(path), "--mpp", "0.5", "--json"])
    info = json.loads(result.stdout)
    assert info["mpp"] == 0.5 and info["mpp_source"] == "argument"


@pytest.mark.parametrize("args", [["--mpp", "-1"], []])
def test_info_errors_are_one_line(tmp_path, args):
    bad = tmp_path / "notes.svs"
    bad.write_text("not a slide\n")
    target = str(bad) if args == [] else str(tmp_path / "absent.tif")
    result = CliRunner().invoke(cli, ["slide", "info", target, *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mitokit: error:")
    assert target in lines[0]
