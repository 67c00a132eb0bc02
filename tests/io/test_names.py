"""Output names made from ids (``mitokit.io.names``): safe, inside their folder, distinct."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mitokit.errors import MitokitError
from mitokit.io.names import MAX_NAME_BYTES, child_path, distinct_names, name_key, safe_name

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOSTILE = [
    ".",
    "..",
    "...",
    "a/b",
    "../x",
    "/etc/passwd",
    "a\\b",
    "a\x00b",
    "a\nb",
    "\n",
    "x" * 1000,
    "é" * 300,
    ".hidden",
    "CON",
    "nul.txt",
    "a.",
    "a ",
    "",
    "\ud800",
    'a<b>c:d"e|f?g*h',
]

_FOLDER = Path(tempfile.mkdtemp(prefix="mitokit-names-"))


def _check(name: str) -> None:
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(ord(c) < 32 for c in name)
    assert not name.startswith(".")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_names_become_plain_file_names(raw, tmp_path):
    name = safe_name(raw)
    _check(name)
    path = child_path(tmp_path, name)
    assert path.parent == tmp_path
    path.write_text("x")  # the file system takes it
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_safe_names_are_kept_and_examples():
    for ok in ("a", "slide_01", "a.b", "A B", "01-25", "ünïcode"):
        assert safe_name(ok) == ok
    assert [safe_name(n) for n in (".", "..", "...", "a/b", "../x")] == [
        "_",
        "__",
        "___",
        "a_b",
        "___x",
    ]
    assert safe_name(".hidden") == "_hidden" and safe_name("CON") == "_CON"
    long_a, long_b = "x" * 500 + "a", "x" * 500 + "b"
    assert safe_name(long_a) != safe_name(long_b)  # a hash of the whole name keeps them apart


@PROPS
@given(st.text(), st.integers(16, 255))
def test_safe_name_properties(raw, max_bytes):
    name = safe_name(raw, max_bytes=max_bytes)
    assert name and name not in (".", "..")
    assert "/" not in name and "\x00" not in name and "\\" not in name
    assert not name.startswith(".")
    assert len(name.encode("utf-8")) <= max_bytes
    assert safe_name(name, max_bytes=max_bytes) == name  # idempotent
    assert safe_name(raw, max_bytes=max_bytes) == name  # deterministic


@PROPS
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_child_path_stays_inside(raw):
    path = child_path(_FOLDER, safe_name(raw))
    real = Path(os.path.realpath(path))
    assert real.parent == Path(os.path.realpath(_FOLDER))


@PROPS
@given(st.text(max_size=40))
def test_child_path_refuses_every_unsafe_component(raw):
    """A raw id is either a plain name inside the folder or refused, never a path elsewhere."""
    try:
        path = child_path(_FOLDER, raw)
    except MitokitError as exc:
        assert "\n" not in str(exc)
        return
    assert Path(os.path.realpath(path)).parent == Path(os.path.realpath(_FOLDER))


def test_child_path_refusals(tmp_path):
    for bad in (".", "..", "", "a/b", "../x", "a\x00b", "/abs"):
        with pytest.raises(MitokitError) as info:
            child_path(tmp_path, bad)
        assert "\n" not in str(info.value)
    (tmp_path / "out").symlink_to("/")
    with pytest.raises(MitokitError, match="outside the output folder"):
        child_path(tmp_path, "out")
    (tmp_path / "loop").symlink_to(tmp_path)
    with pytest.raises(MitokitError, match="outside the output folder"):
        child_path(tmp_path, "loop")  # the folder itself


@PROPS
@given(st.lists(st.text(max_size=12), unique=True, max_size=30))
def test_distinct_names_are_distinct_ignoring_case(ids):
    names = distinct_names(ids)
    assert list(names) == ids
    keys = [name_key(n) for n in names.values()]
    assert len(set(keys)) == len(keys)
    for n in names.values():
        _check(n)


def test_distinct_names_number_clashes_in_order():
    names = distinct_names(["a/b", "a_b", "A_B", "c"])
    assert names == {"a/b": "a_b", "a_b": "a_b_2", "A_B": "A_B_3", "c": "c"}
