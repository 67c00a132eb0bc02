"""Atomic writes: all or nothing, with the usual file mode."""

from __future__ import annotations

import os
import stat

import pytest

from mitokit.io.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_written_file_has_umask_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_atomic_dir_all_or_nothing(tmp_path):
    from mitokit.errors import MitokitError
    from mitokit.io.atomic import atomic_dir

    out = tmp_path / "data"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(MitokitError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ---------------------------------------------------------------- links, devices, failures


def _only(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_goes_through_a_symlink_to_its_file(tmp_path):
    real = tmp_path / "data" / "real.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert _only(tmp_path) == ["data", "link.json"] and _only(real.parent) == ["real.json"]
    chain = tmp_path / "chain.json"
    chain.symlink_to(link)
    write_text_atomic(chain, "newer")
    assert chain.is_symlink() and link.is_symlink() and real.read_text() == "newer"


def test_atomic_dir_through_a_symlink_replaces_the_real_folder(tmp_path):
    from mitokit.io.atomic import atomic_dir

    real = tmp_path / "real"
    real.mkdir()
    (real / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_dir(link, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert link.is_symlink() and _only(real) == ["new.txt"]
    assert _only(tmp_path) == ["link", "real"]


def test_non_regular_destinations_are_refused(tmp_path):
    from mitokit.io.atomic import OutputError

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    link = tmp_path / "null.json"
    link.symlink_to("/dev/null")
    for dest, kind in ((fifo, "FIFO"), (folder, "folder"), (link, "character device")):
        with pytest.raises(OutputError, match=kind) as info:
            write_text_atomic(dest, "x")
        assert str(info.value).startswith(str(dest)) and "\n" not in str(info.value)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir() and link.is_symlink()
    assert _only(tmp_path) == ["folder.json", "null.json", "pipe.json"]
    if os.path.exists("/dev/full"):
        with pytest.raises(OutputError, match="character device"):
            write_text_atomic("/dev/full", "x")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_enospc_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from mitokit.io.atomic import OutputError, atomic_dir

    target = tmp_path / "out.json"
    write_text_atomic(target, "old")
    with pytest.raises(OutputError) as info, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() gives it
    assert str(info.value) == f"{target}: cannot write (No space left on device)"
    assert target.read_text() == "old" and _only(tmp_path) == ["out.json"]

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="No space left"):
        write_text_atomic(target, "new")
    with pytest.raises(OutputError, match="No space left"), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a.txt").write_text("a")
    assert target.read_text() == "old" and _only(tmp_path) == ["out.json"]


def test_errors_about_other_files_pass_unchanged(tmp_path):
    from mitokit.io.atomic import atomic_dir

    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.json"):
        (tmp_path / "missing-input.json").read_text()  # an input, not the output: not a write error
    with pytest.raises(PermissionError), atomic_dir(tmp_path / "d"):
        raise PermissionError(13, "Permission denied")  # no file named, not a write-only reason
    assert _only(tmp_path) == []


def test_a_file_used_as_a_folder_and_proc(tmp_path):
    from mitokit.io.atomic import OutputError, atomic_dir, make_folder

    (tmp_path / "file").write_text("mine")
    for dest in (tmp_path / "file" / "out.json", tmp_path / "file" / "sub" / "out.json"):
        with pytest.raises(OutputError, match="is a file, not a folder"):
            write_text_atomic(dest, "x")
    with pytest.raises(OutputError, match="cannot write"):
        make_folder(tmp_path / "file" / "sub")
    if os.path.isdir("/proc/self"):
        for dest in ("/proc/mitokit-test.json", "/proc/self/mitokit/out.json"):
            with pytest.raises(OutputError, match="cannot write"):
                write_text_atomic(dest, "x")
        with pytest.raises(OutputError, match="cannot write"), atomic_dir("/proc/mitokit-d"):
            pass
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder(tmp_path):
    from mitokit.io.atomic import OutputError

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            write_text_atomic(folder / "out.json", "x")
    finally:
        folder.chmod(0o755)


def test_folder_names_that_are_no_names_are_refused(tmp_path, monkeypatch):
    from mitokit.errors import MitokitError
    from mitokit.io.atomic import atomic_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("mine")
    for bad in (".", "..", "sub/..", "/"):
        with pytest.raises(MitokitError, match="by its name"), atomic_dir(bad, overwrite=True):
            pass
    assert _only(tmp_path) == ["mine.txt"]


def test_swap_failure_keeps_the_old_folder(tmp_path, monkeypatch):
    """Where folders cannot be exchanged in one step: the two-rename swap puts the old back."""
    import errno

    from mitokit.io import atomic
    from mitokit.io.atomic import OutputError, atomic_dir

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_replace = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OutputError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _only(out) == ["old.txt"] and _only(tmp_path) == ["out"]


# ------------------------------------------------------------------------------ temporaries


def test_temporaries_are_named_and_locked(tmp_path):
    from mitokit.io.atomic import TEMP_PATTERN, atomic_dir, remove_stale_temporaries

    with atomic_path(tmp_path / "out.png") as tmp:
        assert TEMP_PATTERN.fullmatch(tmp.name) and tmp.suffix == ".png"
        assert remove_stale_temporaries(tmp_path) == []  # in use: kept
        assert tmp.exists()
    with atomic_dir(tmp_path / "d") as tmp:
        assert TEMP_PATTERN.fullmatch(tmp.name)
        assert remove_stale_temporaries(tmp_path) == [] and tmp.is_dir()
    very_long = "n" * 250
    with atomic_path(tmp_path / very_long) as tmp:  # the temporary name still fits
        assert TEMP_PATTERN.fullmatch(tmp.name)
        tmp.write_text("x")
    assert (tmp_path / very_long).read_text() == "x"


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    from mitokit.io.atomic import remove_stale_temporaries

    stale_dir = tmp_path / ".a.abcd1234.mitokit.tmp"
    stale_dir.mkdir()
    (stale_dir / "summary.json").write_text("{}")
    stale_file = tmp_path / ".run_summary.json.x_y9z8w7.mitokit.tmp.json"
    stale_file.write_text("{")
    keep = [
        "mine.txt",
        ".hidden",
        ".a.abcd1234.tmp",  # another program's temporary
        ".a.ABCD1234.mitokit.tmp",  # not our alphabet
        "a.abcd1234.mitokit.tmp",  # no leading dot
        ".a.abcd1234.mitokit.tmp.json.bak",
    ]
    for name in keep:
        (tmp_path / name).write_text("mine")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / ".b.abcd1234.mitokit.tmp").mkdir()  # only the folder itself is cleaned
    link = tmp_path / ".c.abcd1234.mitokit.tmp"
    link.symlink_to(sub)  # links are never followed or removed
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale_dir.name, stale_file.name])
    assert _only(tmp_path) == sorted([*keep, "sub", link.name])
    assert (sub / ".b.abcd1234.mitokit.tmp").is_dir()


def test_atomic_dir_removes_the_stale_temporaries_of_its_own_output(tmp_path):
    from mitokit.io.atomic import atomic_dir

    (tmp_path / ".data.abcd1234.mitokit.tmp").mkdir()  # a killed run of the same output
    (tmp_path / ".other.abcd1234.mitokit.tmp").mkdir()  # another output's: not ours to judge
    with atomic_dir(tmp_path / "data") as tmp:
        (tmp / "a.txt").write_text("a")
    assert _only(tmp_path) == [".other.abcd1234.mitokit.tmp", "data"]


def test_cleanup_for_one_output_leaves_other_outputs_temporaries(tmp_path):
    from mitokit.io.atomic import remove_stale_temporaries

    for name in (
        ".a.abcd1234.mitokit.tmp",
        ".a.b.abcd1234.mitokit.tmp",
        ".ab.abcd1234.mitokit.tmp",
    ):
        (tmp_path / name).mkdir()
    removed = remove_stale_temporaries(tmp_path, name="a")
    assert [p.name for p in removed] == [".a.abcd1234.mitokit.tmp"]
    assert _only(tmp_path) == [".a.b.abcd1234.mitokit.tmp", ".ab.abcd1234.mitokit.tmp"]


def test_read_only_folder_simulated(tmp_path, monkeypatch):
    """As root ignores permissions, a read-only folder is simulated where the OS would refuse."""
    import errno
    import tempfile

    from mitokit.io.atomic import OutputError, atomic_dir

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".x"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(OutputError, match=r"out.json: cannot write \(Permission denied\)"):
        write_text_atomic(tmp_path / "out.json", "x")
    denied_dir = pytest.raises(OutputError, match=r"d: cannot write \(Permission denied\)")
    with denied_dir, atomic_dir(tmp_path / "d"):
        pass
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(OutputError, match="Read-only file system"):
        write_text_atomic(tmp_path / "out.json", "x")
    assert _only(tmp_path) == []


_KILLED_SWAP = """
import os, shutil, signal, sys
from mitokit.io.atomic import atomic_dir

state = sys.argv[1]

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

real_replace = os.replace

def replace(src, dst):  # the old folder moved aside: die before the new one is moved in
    real_replace(src, dst)
    if os.fspath(src) == state:
        killed()

os.replace = replace
shutil.rmtree = killed  # the folders exchanged: die before the old one is removed
with atomic_dir(state, overwrite=True) as tmp:
    (tmp / "epoch.txt").write_text("2")
"""


def test_a_run_killed_inside_the_folder_swap_leaves_a_whole_folder(tmp_path):
    """Killed between the steps of replacing a folder (a training state), the folder is the
    old one or the new one, never missing; the next run's cleanup leaves it whole."""
    import signal
    import subprocess
    import sys

    from mitokit.io import atomic
    from mitokit.io.atomic import remove_stale_temporaries

    if not atomic._exchange(tmp_path, tmp_path):  # a same-path exchange probes the call
        pytest.skip("no one-step folder exchange on this system")
    state = tmp_path / "state"
    state.mkdir()
    (state / "epoch.txt").write_text("1")
    done = subprocess.run([sys.executable, "-c", _KILLED_SWAP, str(state)], capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    remove_stale_temporaries(tmp_path)
    assert (state / "epoch.txt").read_text() == "2"
    assert _only(tmp_path) == ["state"]
