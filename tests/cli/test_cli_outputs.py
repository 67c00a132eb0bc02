"""Outputs the CLI cannot write: one line on stderr, exit code 2, nothing half-written.

``labels convert``, ``synth patches`` and ``predict patches`` against a full disk (write
failures monkeypatched in, as tests run as root where permissions do not bite), a file used as a
folder, ``/proc``, a FIFO, and links to devices; ``detect`` has its own in test_detect_outputs.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mitokit.cli import cli
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations

ENOSPC = "No space left on device"


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mitokit: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def labels(tmp_path) -> Path:
    data = AnnotationSet(
        [Annotation("a", "img.png", point=(10.0, 20.0))], {"img.png": ImageInfo("img.png")}
    )
    path = tmp_path / "in.csv"
    write_annotations(data, path)
    return path


def _convert(src: Path, dst, *extra: str):
    return CliRunner().invoke(cli, ["labels", "convert", str(src), str(dst), *extra])


def test_convert_full_disk(tmp_path, labels, monkeypatch):
    out = tmp_path / "out.json"

    def full_replace(src, dst):
        raise OSError(errno.ENOSPC, ENOSPC, str(src))

    with monkeypatch.context() as m:
        m.setattr(os, "replace", full_replace)
        _one_line_error(_convert(labels, out), f"{out}: cannot write ({ENOSPC})")
    assert _entries(tmp_path) == ["in.csv"]

    real_write = Path.write_text

    def full_write(self, *args, **kwargs):
        if self.name.startswith(".out.json."):
            raise OSError(errno.ENOSPC, ENOSPC)  # as write() gives it: no file named
        return real_write(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", full_write)
        _one_line_error(_convert(labels, out), f"{out}: cannot write ({ENOSPC})")
    assert _entries(tmp_path) == ["in.csv"]


def test_convert_to_places_that_cannot_take_a_file(tmp_path, labels):
    _one_line_error(_convert(labels, labels / "x.json"), "in.csv is a file, not a folder")
    if os.path.isdir("/proc/self"):
        _one_line_error(_convert(labels, "/proc/mitokit-test.json"), "cannot write")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    _one_line_error(_convert(labels, fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    null = tmp_path / "null.csv"
    null.symlink_to(os.devnull)
    _one_line_error(_convert(labels, null), "character device")
    assert null.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert _entries(tmp_path) == ["in.csv", "null.csv", "pipe.csv"]


def test_convert_writes_through_a_symlink(tmp_path, labels):
    real = tmp_path / "kept" / "real.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    result = _convert(labels, link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and '"img.png"' in real.read_text()
    assert _entries(real.parent) == ["real.json"]


def test_synth_patches_full_disk(tmp_path, monkeypatch):
    import mitokit.data.synthetic.export as export

    def full(path, image):
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(export, "_save_png", full)
    out = tmp_path / "p"
    result = CliRunner().invoke(cli, ["synth", "patches", "--out", str(out), "--n", "3"])
    _one_line_error(result, f"{out}: cannot write ({ENOSPC})")
    assert _entries(tmp_path) == []


def test_synth_into_a_file_used_as_a_folder(tmp_path):
    (tmp_path / "file").write_text("mine")
    out = tmp_path / "file" / "p"
    result = CliRunner().invoke(cli, ["synth", "patches", "--out", str(out), "--n", "3"])
    _one_line_error(result, "is a file, not a folder")
    assert (tmp_path / "file").read_text() == "mine"


@pytest.fixture()
def patch_model(tmp_path) -> tuple[Path, Path]:
    from mitokit.engines.task import get_task
    from mitokit.models.io import save_model

    task = "patch_classifier"
    cfg = {**get_task(task).model_defaults, "input_size": 32}
    save_model(get_task(task).build_model(cfg), tmp_path / "m", task=task, model_cfg=cfg)
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png)
    return tmp_path / "m", png


def test_predict_patches_output_that_cannot_be_written(tmp_path, patch_model, monkeypatch):
    model, png = patch_model
    args = ["predict", "patches", "--model", str(model), str(png)]
    out = tmp_path / "pred.csv"

    def full_replace(src, dst):
        raise OSError(errno.ENOSPC, ENOSPC, str(src))

    with monkeypatch.context() as m:
        m.setattr(os, "replace", full_replace)
        result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    _one_line_error(result, f"{out}: cannot write ({ENOSPC})")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    result = CliRunner().invoke(cli, [*args, "--out", str(png / "pred.csv")])
    _one_line_error(result, "is a file, not a folder")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_standard_output(labels):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "mitokit", "labels", "summary", str(labels), "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"mitokit: error: standard output: cannot write ({ENOSPC})"
    ]


def test_other_os_errors_are_not_hidden(monkeypatch, labels):
    """An OSError that is no write failure is a bug to see, not a user error."""
    import mitokit.io.annotations as annotations

    def broken(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(annotations, "read_annotations", broken)
    result = CliRunner().invoke(cli, ["labels", "convert", str(labels), "x.json"])
    assert result.exit_code == 1 and isinstance(result.exception, OSError)


def test_a_write_failure_the_command_did_not_name(monkeypatch, labels):
    """ENOSPC from a write that names no file, with standard output fine: one line."""
    import mitokit.io.annotations as annotations

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(annotations, "write_annotations", full)
    result = CliRunner().invoke(cli, ["labels", "convert", str(labels), "x.json"])
    _one_line_error(result, f"an output: cannot write ({ENOSPC})")
