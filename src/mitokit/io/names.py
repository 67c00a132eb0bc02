"""Output names made from ids a user controls (slide stems, image ids, object ids).

An id is data, not a path: a slide named ``..tiff`` has the stem ``.``, an image id of a COCO
file may read ``../../x`` or hold a NUL. Every output file or folder named after an id goes
through the two functions here:

- :func:`safe_name` turns any id into one file name that is safe on every common file system:
  no path separator, no NUL or control character, not ``.`` or ``..``, no leading dot (which
  would hide the file), none of the characters Windows reserves, not a Windows device name, and
  at most :data:`MAX_NAME_BYTES` bytes of UTF-8 (room is left for a suffix such as
  ``_overlay.png`` and for the temporary name of an atomic write). A name that is already safe is
  returned unchanged, so existing outputs keep their names.
- :func:`child_path` joins a name to its output folder and refuses, with a one-line
  :class:`~mitokit.errors.MitokitError`, anything that would not land strictly inside the folder
  (the folder itself, its parent, elsewhere through a symbolic link).

Different ids can give the same safe name (``a/b`` and ``a_b``; ``A`` and ``a``, which share a
file on case-insensitive file systems). :func:`distinct_names` numbers them apart (``a_b``,
``a_b_2``); callers whose names must stay the same from run to run (``mitokit detect`` resumes
by folder name) refuse such a clash instead, with :func:`name_key` as the comparison key.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from mitokit.errors import input_error

MAX_NAME_BYTES = 120
"""Longest name :func:`safe_name` returns, in bytes of UTF-8 (file systems allow 255)."""

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')
"""Control characters, path separators of any system, and the characters Windows reserves."""

_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{i}" for p in ("COM", "LPT") for i in "0123456789¹²³"]
)


def safe_name(name: object, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A file name made from ``name`` that cannot leave, hide in or clash with its folder.

    Unsafe characters (path separators ``/`` and ``\\``, NUL and other control characters,
    ``<>:"|?*``, unpaired surrogates) become ``_``; leading dots become ``_`` (so ``.`` and
    ``..`` give ``_`` and ``__``, ``.hidden`` gives ``_hidden``); trailing dots and spaces, which
    Windows drops, become ``_``; a Windows device name (``CON``, ``nul.txt`` ...) gets a ``_``
    in front; an empty name becomes ``_``. A name longer than ``max_bytes`` bytes of UTF-8 is cut
    and ends with ``~`` and 8 hex digits of a hash of the whole name, so long names that differ
    only at the end stay different. The result is never empty and is deterministic; a name
    that is already safe comes back unchanged.

    Args:
        name: Any id (converted with ``str``).
        max_bytes: Longest result in bytes of UTF-8 (at least 16).
    """
    if max_bytes < 16:
        raise ValueError(f"max_bytes must be at least 16, got {max_bytes}")
    text = str(name)
    # Unpaired surrogates (undecodable bytes of a file name) cannot be written as UTF-8.
    out = "".join("_" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    out = _UNSAFE.sub("_", out)
    stripped = out.lstrip(".")
    out = "_" * (len(out) - len(stripped)) + stripped
    body = out.rstrip(". ")
    out = body + "_" * (len(out) - len(body))
    if not out:
        out = "_"
    if out.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        out = "_" + out
    if len(out.encode("utf-8")) > max_bytes:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        keep = max_bytes - 9
        cut = out.encode("utf-8")[:keep].decode("utf-8", "ignore")
        out = f"{cut}~{digest}"
    return out


def name_key(name: str) -> str:
    """The key two names are compared by: equal keys may name the same file somewhere.

    Case-insensitive file systems (macOS, Windows) fold case, and macOS also normalises
    Unicode, so ``Slide``, ``slide`` and a decomposed ``é`` are one file there.
    """
    return unicodedata.normalize("NFC", name).casefold()


def distinct_names(
    ids: Iterable[object], *, make: Callable[[object], str] = safe_name
) -> dict[object, str]:
    """A distinct safe name for each id; ids whose names clash are numbered apart.

    Ids are taken in the order given: the first keeps its name, the next ones with the same
    name (compared by :func:`name_key`, so case does not separate them) get ``_2``, ``_3`` ...
    Give the ids in a stable order (sorted) for names that do not change from run to run.

    Args:
        ids: The ids, each once.
        make: Turns an id into a name (default :func:`safe_name`); its results must be safe.

    Returns:
        The name of each id.
    """
    out: dict[object, str] = {}
    used: set[str] = set()
    for key in ids:
        base = make(key)
        name, n = base, 1
        while name_key(name) in used:
            n += 1
            name = safe_name(f"{base}_{n}")
        used.add(name_key(name))
        out[key] = name
    return out


def child_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder / name``, refused unless it lies strictly inside ``folder``.

    ``name`` must be one path component (pass it through :func:`safe_name` first). The check
    resolves both paths, so a name that is ``.``, ``..``, absolute, holds a separator or NUL, or
    is a symbolic link leading out of ``folder`` is refused.

    Returns:
        ``Path(folder) / name`` (not resolved).

    Raises:
        MitokitError: ``"<folder>/<name>: ..."`` in one line when the path would be the folder
            itself or lie outside it.
    """
    base = Path(folder)
    if not _plain(name):
        raise input_error(base, f"output name {name!r} would not be a file inside this folder")
    path = base / name
    root = Path(os.path.realpath(base))
    real = Path(os.path.realpath(path))
    if real == root or root not in real.parents:
        raise input_error(path, f"would be written outside the output folder {base} (at {real})")
    return path


def _plain(name: object) -> bool:
    """Whether ``name`` is a single ordinary path component."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        return False
    seps = {"\x00", "/", os.sep, os.altsep or "/"}
    return not any(c in name for c in seps)


__all__ = ["MAX_NAME_BYTES", "child_path", "distinct_names", "name_key", "safe_name"]
