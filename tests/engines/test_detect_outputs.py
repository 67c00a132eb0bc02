"""What ``mitokit detect`` writes stays inside its output folder and loses nothing a user owns.

Hostile slide names, clashing names, a full disk, and a run killed at a random moment: the
outputs of other slides and the user's own files in the output folder survive, and no
temporary is left behind. Slides and the model are the tiny ones of ``test_engine_slide``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_engine_slide import BlobPredictor, small_slide

from mitokit.cli import cli
from mitokit.engines.slide import SUMMARY, SlidePredictor, slide_folder_names
from mitokit.errors import MitokitError
from mitokit.io.atomic import TEMP_PATTERN

OUTPUTS = ["detections.csv", "detections.geojson", "heatmap.png", "summary.json", "tiles.csv"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TEMP_PATTERN.fullmatch(p.name)]


def _detect(slides, out, model, *extra):
    args = ["detect", *map(str, slides), "--model", str(model), "--out", str(out), *extra]
    return CliRunner().invoke(cli, args)


@pytest.fixture()
def model(monkeypatch, tmp_path) -> Path:
    """``--model`` loads a BlobPredictor (the CLI's model loading is patched)."""
    import mitokit.models.predictors as predictors

    monkeypatch.setattr(
        predictors,
        "load_predictor",
        lambda folder, *, device="cpu", backend="torch": BlobPredictor(),
    )
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def slide_bytes(tmp_path_factory) -> bytes:
    path, _ = small_slide(tmp_path_factory.mktemp("one"), "s.tif", 40, n=4)
    return path.read_bytes()


def test_dot_names_do_not_replace_the_output_folder(tmp_path, model, slide_bytes):
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "a.tif").write_bytes(slide_bytes)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    first = _detect([slides / "a.tif"], out, model)
    assert first.exit_code == 0, first.output
    before = _tree(out / "a")
    for name in ("..tiff", "...tiff", ".tiff", "....tif"):
        (slides / name).write_bytes(slide_bytes)
        result = _detect([slides / name], out, model)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    assert (out / "notes.txt").read_text() == "mine"
    assert _tree(out / "a") == before
    # stems ".", "..", "" (".tiff" has the stem ".tiff"), "..."
    expected = {"_", "__", "_tiff", "___"}
    assert expected <= {p.name for p in out.iterdir()}
    for name in expected:
        assert sorted(p.name for p in (out / name).iterdir()) == OUTPUTS
    assert not _temporaries(out) and not _temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out", "slides"]


def test_hostile_slide_names(tmp_path, model, slide_bytes):
    slides = tmp_path / "slides"
    slides.mkdir()
    names = ["a\nb.tif", "x" * 240 + ".tif", "CON.tif", "a:b?.tif", " .tif", "é" * 100 + ".tif"]
    for name in names:
        (slides / name).write_bytes(slide_bytes)
    out = tmp_path / "out"
    result = _detect([slides / n for n in names], out, model, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    folders = [Path(s["folder"]) for s in report["slides"]]
    assert len(set(folders)) == len(names)
    for folder in folders:
        assert folder.parent == out and (folder / SUMMARY).is_file()
        assert "\n" not in folder.name and len(folder.name.encode()) <= 120
    # a second run finds every slide's folder again: all skipped
    again = _detect([slides / n for n in names], out, model, "--json")
    assert json.loads(again.stdout)["skipped"] == len(names)


@pytest.mark.parametrize(
    ("first", "second", "needle"),
    [
        ("a.tif", "sub/a.svs", "same name stem"),
        ("A.tif", "a.tif", "ignoring case"),
        ("a:b.tif", "a_b.tif", "would get the output folder"),
        ("..tiff", "_.tif", "would get the output folder"),
        ("run_summary.json.tif", None, "run summary"),
        ("Run_Summary.rank3.json.tif", None, "run summary"),
    ],
)
def test_clashing_folder_names_are_refused(tmp_path, model, first, second, needle):
    paths = []
    for name in (first, second):
        if name is None:
            continue
        p = tmp_path / "slides" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        paths.append(p)
    with pytest.raises(MitokitError, match=needle):
        slide_folder_names(paths)
    out = tmp_path / "out"
    result = _detect(paths, out, model)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_symlinked_slide_folder_leading_out_is_refused(tmp_path, model, slide_bytes):
    (tmp_path / "a.tif").write_bytes(slide_bytes)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").symlink_to(elsewhere)
    result = _detect([tmp_path / "a.tif"], out, model)
    assert result.exit_code == 2 and "outside the output folder" in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, model, slide_bytes, monkeypatch):
    import mitokit.report.slide_outputs as slide_module

    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(slide_bytes)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    def full(result, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(slide_module, "_write_tiles_csv", full)
    result = _detect([tmp_path / "a.tif", tmp_path / "b.tif"], out, model)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"mitokit: error: {out / 'a'}: cannot write (No space left on device)"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # the run stopped at once


def test_out_is_a_file_or_under_proc(tmp_path, model, slide_bytes):
    (tmp_path / "a.tif").write_bytes(slide_bytes)
    (tmp_path / "file").write_text("mine")
    targets = [tmp_path / "file" / "out"]
    if os.path.isdir("/proc/self"):
        targets.append(Path("/proc/mitokit-detect-test"))
    for out in targets:
        result = _detect([tmp_path / "a.tif"], out, model)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "cannot write" in result.stderr
    assert (tmp_path / "file").read_text() == "mine"


# ------------------------------------------------------------------------------ killed runs

_RUNNER = """
import sys
sys.path.insert(0, {tests!r})
import mitokit.models.predictors as predictors
from test_engine_slide import BlobPredictor
predictors.load_predictor = lambda folder, *, device="cpu", backend="torch": BlobPredictor()
from mitokit.cli import main
main(sys.argv[1:])
"""


def _start(slides: list[Path], out: Path, model: Path) -> subprocess.Popen:
    code = _RUNNER.format(tests=str(Path(__file__).parent))
    args = ["detect", *map(str, slides), "--model", str(model), "--out", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _wait_for(proc: subprocess.Popen, ready, deadline_s: float = 120.0) -> None:
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < deadline_s and not ready():
        time.sleep(0.002)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_a_killed_run_is_completed_by_the_next(tmp_path, slide_bytes):
    rng = random.Random(7)  # the moments are seeded; the work they land in varies a little
    slides = []
    folder = tmp_path / "slides"
    folder.mkdir()
    for k in range(4):
        path, _ = small_slide(folder, f"s{k}.tif", 50 + k, n=4)
        slides.append(path)
    model = tmp_path / "model"
    model.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".notes.abcdefgh.tmp").write_text("mine too")  # not mitokit's pattern
    # A slide done earlier, which the killed runs must not touch.
    (folder / "done.tif").write_bytes(slide_bytes)
    first = _start([folder / "done.tif"], out, model)
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    first.stdout.close()
    first.stderr.close()
    done_before = _tree(out / "done")

    # Kill 1: while a slide's temporary folder exists (a temporary is certainly left).
    proc = _start(slides, out, model)
    _wait_for(proc, lambda: bool(_temporaries(out)))
    _kill(proc)
    assert _temporaries(out), "the first kill should leave a temporary"
    # Kills 2 and 3: at a random moment once the run writes (its start is mostly imports).
    for _ in range(2):
        proc = _start(slides, out, model)
        _wait_for(proc, lambda: bool(_temporaries(out)))
        time.sleep(rng.uniform(0.0, 1.5))
        _kill(proc)
    final = _start(slides, out, model)
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["done"] + report["skipped"] == len(slides)
    for path in slides:
        assert sorted(p.name for p in (out / path.stem).iterdir()) == OUTPUTS
        summary = json.loads((out / path.stem / SUMMARY).read_text())
        assert summary["mitotic_count"] == 4
    assert not _temporaries(out)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / ".notes.abcdefgh.tmp").read_text() == "mine too"
    assert _tree(out / "done") == done_before
    names = {p.name for p in out.iterdir()}
    assert names == {"done", "notes.txt", ".notes.abcdefgh.tmp", "run_summary.json"} | {
        p.stem for p in slides
    }


def test_a_live_runs_temporaries_survive_another_run(tmp_path, slide_bytes, monkeypatch):
    """Two runs in one folder (torchrun ranks): one's cleanup leaves the other's work alone."""
    import mitokit.report.slide_outputs as slide_module

    (tmp_path / "a.tif").write_bytes(slide_bytes)
    (tmp_path / "b.tif").write_bytes(slide_bytes)
    out = tmp_path / "out"
    seen = []
    real_csv = slide_module._write_tiles_csv

    def meanwhile(result, path):
        # While a's folder is being written, another run starts in the same output folder.
        if not seen:
            seen.append(path.parent)
            other = SlidePredictor(BlobPredictor(), progress=False)
            other.run([tmp_path / "b.tif"], out)
            assert path.parent.is_dir()
        real_csv(result, path)

    monkeypatch.setattr(slide_module, "_write_tiles_csv", meanwhile)
    SlidePredictor(BlobPredictor(), progress=False).run([tmp_path / "a.tif"], out)
    assert seen and (out / "a" / SUMMARY).is_file() and (out / "b" / SUMMARY).is_file()
    assert not _temporaries(out)
