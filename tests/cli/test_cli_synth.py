"""`mitokit synth` and `mitokit demo` from the command line."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.io import open_slide
from mitokit.io.annotations import read_annotations


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def _run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def test_synth_patches_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        _run("synth", "patches", "--out", tmp_path / name, "--n", 20, "--seed", seed)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    labels = read_annotations(tmp_path / "a" / "labels.csv")
    assert len(labels) == 20 and all(a.votes for a in labels)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["objects"]) == 20 and manifest["seed"] == 1


def test_synth_refuses_to_overwrite_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "p"
    _run("synth", "patches", "--out", out, "--n", 4)
    before = _digest(out)
    res = CliRunner().invoke(cli, ["synth", "patches", "--out", str(out), "--n", "4"])
    assert res.exit_code == 2 and "not empty" in res.stderr
    assert _digest(out) == before
    res = CliRunner().invoke(
        cli, ["synth", "patches", "--out", str(out), "--n", "4", "--rater-noise", "-1"]
    )
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def test_synth_tiles_and_slide(tmp_path):
    _run("synth", "tiles", "--out", tmp_path / "t", "--n", 2, "--size", 256)
    crowd = read_annotations(tmp_path / "t" / "crowd.json")
    consensus = read_annotations(tmp_path / "t" / "consensus.geojson")
    assert set(consensus.images) == {"tile_0000.png", "tile_0001.png"}
    assert all(a.agreement is not None for a in crowd)

    res = _run(
        "synth",
        "slide",
        "--out",
        tmp_path / "s",
        "--width",
        1500,
        "--height",
        1100,
        "--mpp",
        0.5,
        "--json",
    )
    summary = json.loads(res.stdout)
    with open_slide(tmp_path / "s" / "slide.tiff") as slide:
        assert slide.dimensions == (1500, 1100)
        assert slide.mpp == 0.5 and slide.level_count >= 2
    assert summary["cells"] == len(read_annotations(tmp_path / "s" / "pathologists.csv"))


@pytest.mark.slow  # about 3 minutes on an idle 2-core CPU; each stage has its own fast test
def test_quick_demo_writes_a_report_whose_images_exist(tmp_path):
    out = tmp_path / "demo"
    _run("demo", "--quick", "--out", out)

    class Imgs(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    p = Imgs()
    p.feed((out / "report.html").read_text())
    assert len(p.srcs) >= 4
    assert all((out / s).is_file() for s in p.srcs)
    assert (out / "tiles" / "crowd.json").is_file() and (out / "slide" / "slide.tiff").is_file()


def test_demo_driver_runs_every_stage_in_order_and_replaces_the_folder(tmp_path, monkeypatch):
    """The driver with the training stages stubbed (they have their own tests)."""
    from mitokit.demo import DemoSize, core, diffusion, localisation

    calls = []

    def stub(name):
        def stage(out, report, *, ctx, **_):
            calls.append((name, sorted(ctx)))
            report.section(f"stub {name}")

        return stage

    monkeypatch.setattr(core, "_stage_ensemble", stub("ensemble"))
    monkeypatch.setattr(core, "_stage_reg_vs_regns", stub("reg"))
    monkeypatch.setattr(localisation, "stage_localisation", stub("localisation"))
    monkeypatch.setattr(diffusion, "stage_diffusion", stub("diffusion"))
    out = tmp_path / "demo"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    size = DemoSize(patches=40, tiles=1, tile_size=256, slide=(1024, 768), heldout_patches=20)
    page = core.run_demo(out, size=size, real_dir=None, say=lambda _: None)

    assert page == out / "report.html" and not (out / "stale.txt").exists()
    assert [c[0] for c in calls] == ["ensemble", "reg", "localisation", "diffusion"]
    assert "slide" in calls[2][1]  # the slide stage hands its slide to the later stages
    text = page.read_text()
    for title in ("Pathologists", "A whole slide", "stub diffusion", "Run time"):
        assert title in text
    assert text.count("<tr><td>") >= 8  # the run-time table: one row per stage
    assert "url=report.html" in (out / "index.html").read_text()
