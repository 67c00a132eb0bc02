"""Write outputs to a temporary name in the target folder, then rename into place.

A crash or an error half-way leaves the old file (or nothing), never a half-written one.

- The temporary lies beside the real destination: a destination that is a symbolic link is
  written through (the link stays, the file it points to is replaced). A destination that
  exists and is not a regular file (a device such as ``/dev/full``, a FIFO, a socket, a
  folder) is refused: renaming onto it would replace the device node or the folder.
- Temporaries are named ``.<name>.<8 random characters>.mitokit.tmp[<suffix>]``
  (:data:`TEMP_MARK`). The process writing one holds an advisory lock on it, so a later run can
  tell a temporary left by a killed run from one still being written:
  :func:`remove_stale_temporaries` removes only the former, and only names of this pattern.
- An ``OSError`` met while writing (no space left, a read-only or missing folder, a file where
  a folder should be, a path under ``/proc``) becomes :class:`OutputError`, a
  :class:`~mitokit.errors.MitokitError` naming the destination and the system's reason in one
  line (``out.json: cannot write (No space left on device)``), and the temporary is removed.
  Inside the ``with`` block only errors about the temporary itself (its path, or no path and a
  reason that only writing gives, such as ENOSPC) are converted; others, such as an input that
  cannot be read, pass through unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mitokit.errors import MitokitError, input_error

try:  # advisory locks tell a live temporary from a dead one (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TEMP_MARK = ".mitokit.tmp"
"""What every temporary name of mitokit carries (before the destination's suffix, if any)."""

TEMP_PATTERN = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.mitokit\.tmp(\.[^.]*)?", re.DOTALL)
"""Matches (in full) the names :func:`atomic_path` and :func:`atomic_dir` give temporaries."""

STALE_AFTER_S = 24 * 3600
"""Without advisory locks (Windows), a temporary is taken as stale only after this long."""

_NAME_PART = 60
"""Characters of the destination's name kept in a temporary name (room for the rest)."""

_WRITE_ONLY_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG") if hasattr(errno, name)
)
"""Reasons that only writing gives: converted even when the error names no file."""


class OutputError(MitokitError):
    """An output could not be written (the destination's fault, not the program's).

    Attributes:
        path: The output named in the message.
        reason: Why, in a short phrase.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(str(input_error(path, reason)))
        self.path = Path(path)
        self.reason = reason


def write_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """``"<path>: cannot write (<reason>)"`` for an ``OSError`` met writing ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(path, f"cannot write ({reason})")


def output_write_error(exc: OSError, unnamed: str = "an output") -> OutputError | None:
    """:class:`OutputError` for an ``OSError`` only writing can cause (ENOSPC, EDQUOT, EROFS,
    EFBIG), naming its file (``unnamed`` when it names none); None for any other error."""
    if exc.errno not in _WRITE_ONLY_ERRNOS:
        return None
    return write_error(exc.filename if exc.filename is not None else unnamed, exc)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix so that libraries choosing a format by extension
    (Pillow, matplotlib) still do the right thing. A symbolic link at ``path`` is written through
    to the file it points to.

    Raises:
        OutputError: ``path`` exists and is not a regular file, or writing failed (see the
            module docstring); the temporary is removed and an existing file is left as it was.
    """
    shown = Path(path)
    make_folder(shown.parent, shown)
    target = _real_destination(shown)
    _refuse_non_regular(shown, target)
    with _guard(shown):
        tmp_path, fd = _locked_temp(target, folder=False)
    try:
        with _guard(shown):
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with _guard(shown, inside=tmp_path):
            yield tmp_path
        with _guard(shown):
            _refuse_non_regular(shown, target)  # something may have appeared meanwhile
            os.replace(tmp_path, target)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` if the block succeeds.

    A folder of outputs (a dataset, a report) appears whole or not at all. An existing
    non-empty ``path`` is an error unless ``overwrite`` is set, in which case it is replaced
    only once the new folder is complete. A symbolic link at ``path`` is followed (the folder it
    points to is the one replaced). Temporaries of ``path`` left by a killed run (see
    :func:`remove_stale_temporaries`) are removed first.

    Raises:
        MitokitError: ``path`` is not a folder, or is not empty and ``overwrite`` is not set.
        OutputError: Writing failed; nothing is left behind and an existing folder is kept.
    """
    shown = Path(path)
    if shown.name in ("", ".", ".."):
        raise input_error(shown, "give the output folder by its name, not as '.', '..' or '/'")
    make_folder(shown.parent, shown)
    target = _real_destination(shown)
    with _guard(shown):
        if target.exists() and not target.is_dir():
            raise input_error(shown, "exists and is not a folder")
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise input_error(
                shown, "folder exists and is not empty (pass --overwrite to replace it)"
            )
        remove_stale_temporaries(target.parent, name=target.name)
        tmp, fd = _locked_temp(target, folder=True)
    try:
        with _guard(shown):
            os.chmod(tmp, 0o777 & ~_umask())
        with _guard(shown, inside=tmp):
            yield tmp
        with _guard(shown):
            if target.exists():
                _swap(tmp, target)
            else:
                os.replace(tmp, target)
    finally:
        os.close(fd)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def make_folder(folder: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Create ``folder`` (and its parents) for an output; :class:`OutputError` if impossible.

    Args:
        folder: The folder to create.
        dest: The output it is made for, named in the error (default: ``folder``).
    """
    folder = Path(folder)
    shown = folder if dest is None else Path(dest)
    if folder.is_dir():
        return folder
    for above in (folder, *folder.parents):
        if above.is_symlink() and not above.exists():
            break  # a dangling link: let mkdir tell
        if above.exists():
            if not above.is_dir():
                raise OutputError(shown, f"cannot write ({above} is a file, not a folder)")
            break
    with _guard(shown):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_stale_temporaries(folder: str | os.PathLike, *, name: str | None = None) -> list[Path]:
    """Remove the temporaries a killed run left in ``folder``; those in use are kept.

    Only entries of ``folder`` itself (not of its sub-folders) whose name matches
    :data:`TEMP_PATTERN` are considered (with ``name``: only the temporaries of that
    destination), symbolic links never; one is removed only when no process holds its lock
    (on systems without advisory locks: when older than :data:`STALE_AFTER_S`).

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_PATTERN.fullmatch(entry.name)
        if match is None or (name is not None and match["name"] != _short(name)):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if not (is_dir or entry.is_file(follow_symlinks=False)):
                continue
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(entry.path, flags | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
        except OSError:
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live process is writing it
            elif time.time() - os.fstat(fd).st_mtime < STALE_AFTER_S:  # pragma: no cover
                continue
            if is_dir:
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


# --------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _guard(dest: Path, *, inside: Path | None = None) -> Iterator[None]:
    """Turn an ``OSError`` about writing ``dest`` into :class:`OutputError`.

    Without ``inside`` every ``OSError`` is converted (the block only touches the destination).
    With it, only errors naming a path under ``inside`` or ``dest``, or naming no path but
    with a reason only writing gives, are: an error about another file passes unchanged.
    """
    try:
        yield
    except OutputError as exc:
        if inside is not None and _under(exc.path, inside):  # name the output, not its temporary
            rel = os.path.relpath(os.path.abspath(exc.path), os.path.abspath(inside))
            raise OutputError(dest / rel, exc.reason) from exc
        raise
    except OSError as exc:
        if inside is not None and not _about(exc, (inside, dest)):
            raise
        raise write_error(dest, exc) from exc


def _about(exc: OSError, paths: tuple[Path, ...]) -> bool:
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    if not names:
        return exc.errno in _WRITE_ONLY_ERRNOS
    for n in names:
        try:
            p = Path(os.fsdecode(n))
        except (TypeError, ValueError):
            continue
        if any(_under(p, root) for root in paths):
            return True
    return False


def _under(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies inside it (lexically, both made absolute)."""
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return p == r or r in p.parents


def _real_destination(path: Path) -> Path:
    """``path``, or where it leads if it is a symbolic link (written through, not replaced)."""
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_non_regular(shown: Path, target: Path) -> None:
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise write_error(shown, exc) from exc
    if stat.S_ISREG(mode):
        return
    kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
    via = f" (the link leads to {target})" if target != shown else ""
    raise OutputError(shown, f"is {kind}{via}; only a regular file can be written here")


def _short(name: str) -> str:
    return name[:_NAME_PART]


def _suffix(target: Path) -> str:
    """The destination's suffix, if it is short and plain (kept for format detection)."""
    suffix = target.suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9_-]{1,16}", suffix) else ""


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _locked_temp(target: Path, *, folder: bool) -> tuple[Path, int]:
    """A new temporary file or folder beside ``target``, locked by this process (path, fd)."""
    prefix, suffix = f".{_short(target.name)}.", TEMP_MARK + ("" if folder else _suffix(target))
    for _ in range(10):
        if folder:
            tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent)
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        _lock(fd)
        try:  # another run's cleanup may have taken it between its creation and the lock
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return Path(tmp), fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(errno.EAGAIN, "temporaries keep disappearing", str(target.parent))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    global _RENAMEAT2
    if _RENAMEAT2 is None:
        _RENAMEAT2 = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                func = libc.renameat2
                func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
                func.argtypes.append(ctypes.c_uint)
                func.restype = ctypes.c_int
                _RENAMEAT2 = func
    if not _RENAMEAT2:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = _RENAMEAT2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if done == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


_RENAMEAT2 = None


def _swap(new: Path, target: Path) -> None:
    """Replace the folder ``target`` by the folder ``new``; the old one is removed.

    Where the system can (Linux), the two folders are exchanged in one step, so at every moment
    ``target`` is either the whole old folder or the whole new one, even for a run killed
    there. Elsewhere, two renames: the old folder is first moved aside under a temporary name
    (locked, so no cleanup takes it meanwhile; a killed run leaves it to
    :func:`remove_stale_temporaries`), then the new one is moved in; if that fails, the old
    folder is moved back.
    """
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder, under the temporary name
        return
    aside = Path(
        tempfile.mkdtemp(prefix=f".{_short(target.name)}.", suffix=TEMP_MARK, dir=target.parent)
    )
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _lock(fd)  # the lock follows the old folder under its temporary name
        os.replace(target, aside)  # onto the empty placeholder: allowed by rename(2)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(aside)  # still the empty placeholder if the first rename failed


__all__ = [
    "TEMP_MARK",
    "TEMP_PATTERN",
    "OutputError",
    "atomic_dir",
    "atomic_path",
    "make_folder",
    "output_write_error",
    "remove_stale_temporaries",
    "write_error",
    "write_text_atomic",
]
