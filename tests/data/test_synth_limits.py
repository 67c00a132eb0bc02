"""Absurd synthetic sizes are refused at once, in one line, before any work or output."""

from __future__ import annotations

import math
import time

import pytest
from click.testing import CliRunner

import mitokit.data.synthetic.limits as limits
from mitokit.cli import cli
from mitokit.data.synthetic.generate import SyntheticSlide, generate_patches, generate_tiles
from mitokit.errors import MitokitError


def _refused(args, tmp_path, *needles):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["synth", *args, "--out", str(tmp_path / "o")])
    assert time.perf_counter() - start < 10
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mitokit: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing started, not even a temporary


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["slide", "--width", "1000000000", "--height", "1000000000"], "--width must be between"),
        (["slide", "--width", "1000", "--height", "200001"], "--height must be between"),
        (["slide", "--width", "100", "--height", "1000"], "--width must be between 256"),
        (["tiles", "--size", "1000000000"], "--size must be between 64 and 8,192"),
        (["tiles", "--size", "8193"], "--size must be between"),
        (["tiles", "--n", "0"], "--n must be a whole number >= 1"),
        (["patches", "--size", "1000000000"], "--size must be between 8 and 8,192"),
        (["patches", "--n", "1000000000000"], "of memory needed"),
    ],
)
def test_absurd_sizes_are_refused_at_once(tmp_path, args, needle):
    _refused(args, tmp_path, needle)


def test_requests_beyond_the_machine_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 10**9)
    monkeypatch.setattr(limits, "available_disk", lambda path: 10**8)
    _refused(["patches", "--n", "100000", "--size", "64"], tmp_path, "1.2 GB of memory needed")
    _refused(["tiles", "--n", "10", "--size", "8192"], tmp_path, "of disk needed", "100.0 MB free")
    _refused(
        ["slide", "--width", "200000", "--height", "200000"],
        tmp_path,
        "about 5,000,000 cells",
        "of memory needed",
    )
    monkeypatch.setattr(limits, "available_memory", lambda: 10**12)
    _refused(["slide", "--width", "200000", "--height", "200000"], tmp_path, "of disk needed")


def test_the_limits_are_documented_in_the_help():
    for command, text in (("slide", "200,000"), ("tiles", "8192"), ("patches", "8192")):
        result = CliRunner().invoke(cli, ["synth", command, "--help"])
        assert text in result.output


def test_the_api_refuses_too():
    start = time.perf_counter()
    with pytest.raises(MitokitError, match=r"slide size \(width\) must be between"):
        SyntheticSlide((10**9, 10**9), seed=0)
    with pytest.raises(MitokitError, match="size must be between"):
        generate_patches(1, seed=0, size=10**9)
    with pytest.raises(MitokitError, match="size must be between"):
        next(generate_tiles(1, seed=0, size=10**9))
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1.5, True, "12", None, -3])
def test_check_side_refuses_what_is_no_side(bad):
    with pytest.raises(MitokitError):
        limits.check_side(bad, name="size", low=8, high=64)


def test_check_side_accepts_whole_numbers():
    import numpy as np

    assert limits.check_side(np.int64(16), name="size", low=8, high=64) == 16
    assert limits.check_side(16.0, name="size", low=8, high=64) == 16
