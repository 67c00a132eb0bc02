"""The generated docs match the code: docs/cli.md is the CLI's current --help."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date():
    ref = _load("cli_reference")
    expected = ref.render()
    current = ref.CLI_MD.read_text(encoding="utf-8")
    if current != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/cli.md",
                    "mitokit --help",
                )
            )[:60]
        )
        raise AssertionError(
            f"docs/cli.md is out of date; run: python docs/cli_reference.py\n{diff}"
        )


def test_cli_reference_covers_every_command():
    import click

    from mitokit.cli import cli

    def paths(cmd, prefix):
        yield prefix
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from paths(sub, f"{prefix} {name}")

    text = _load("cli_reference").render()
    for path in paths(cli, "mitokit"):
        assert f"## `{path}`\n" in text
