"""The Python examples of the README and of docs/getting-started.md run as written.

Conventions of the Markdown files in ``DOCS`` (the HTML comments are hidden on GitHub and in the
site):

* Every fenced ```` ```python ```` block runs, in file order, in one namespace per file, with a
  fresh temporary folder as the working directory; a copy of the repository's ``configs/`` is
  there, as it is beside a reader working in a clone.
* A block does not run when the last non-blank line before its opening fence is
  ``<!-- docs-test: skip -->``, or when its info string says more than ``python`` (for example
  ```` ```python title="sketch.py" ````).
* A ```` ```bash ````, ```` ```sh ```` or ```` ```console ```` block runs only when marked
  ``<!-- docs-test: run -->`` the same way. Each of its commands must then be a ``mitokit ...``
  line (a trailing backslash continues it, ``#`` starts a comment, a leading ``$`` is dropped);
  it runs through click's CliRunner in this process and must exit with 0. That is how the
  examples get their small generated data: the reader types the same commands.

Keep every file's examples fast (tens of seconds on a 2-core CPU): small generated data, one
epoch.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/getting-started.md"]
README_LIMIT = 10_240  # bytes: the README is the front door; details live in docs/

SKIP = "<!-- docs-test: skip -->"
RUN = "<!-- docs-test: run -->"
SHELL = {"bash", "sh", "console", "shell"}
_FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`]*)$")


@dataclass
class Block:
    kind: str  # "python" or "shell"
    code: str
    line: int  # 1-based line of the opening fence


def blocks_to_run(text: str) -> list[Block]:
    """The blocks of a Markdown text that the conventions above say to run, in order."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        end = i + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        body = "\n".join(lines[i + 1 : end]) + "\n"
        before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        lang = info.split()[0] if info else ""
        if lang == "python" and info == "python" and before != SKIP:
            found.append(Block("python", body, i + 1))
        elif lang in SHELL and before == RUN:
            found.append(Block("shell", body, i + 1))
        i = end + 1
    return found


def shell_commands(code: str) -> list[list[str]]:
    """The ``mitokit`` commands of a shell block, as argument lists (without ``mitokit``)."""
    joined = re.sub(r"\\\n", " ", code)
    commands = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line.startswith("$"):
            line = line[1:].strip()
        if not line or line.startswith("#"):
            continue
        args = shlex.split(line, comments=True)
        if not args or args[0] != "mitokit":
            raise AssertionError(f"a docs-test: run block may hold only mitokit commands: {raw!r}")
        commands.append(args[1:])
    return commands


def test_conventions_are_parsed():
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            SKIP,
            "",
            "```python",
            "raise SystemExit",
            "```",
            '```python title="sketch.py"',
            "raise SystemExit",
            "```",
            "```bash",
            "rm -rf /",
            "```",
            RUN,
            "```console",
            "$ mitokit synth tiles --out t \\",
            "    --n 2   # two tiles",
            "```",
        ]
    )
    got = blocks_to_run(text)
    assert [(b.kind, b.line) for b in got] == [("python", 1), ("shell", 16)]
    assert shell_commands(got[1].code) == [["synth", "tiles", "--out", "t", "--n", "2"]]
    with pytest.raises(AssertionError, match="only mitokit commands"):
        shell_commands("ls\n")


@pytest.mark.parametrize("name", DOCS)
def test_examples_run(name, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mitokit.cli import cli

    blocks = blocks_to_run((ROOT / name).read_text(encoding="utf-8"))
    assert any(b.kind == "python" for b in blocks), f"{name}: no Python example found"
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs_example__"}
    runner = CliRunner()
    for block in blocks:
        where = f"{name}:{block.line}"
        if block.kind == "shell":
            for args in shell_commands(block.code):
                result = runner.invoke(cli, args, catch_exceptions=False)
                assert result.exit_code == 0, f"{where}: mitokit {' '.join(args)}\n{result.output}"
        else:
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - our own docs


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    size = len(text.encode("utf-8"))
    assert size <= README_LIMIT, (
        f"README.md is {size} bytes (at most {README_LIMIT}): move details into docs/"
    )
    for target in re.findall(r"\]\((docs/[^)#\s]+)", text):
        assert (ROOT / target).is_file(), f"README.md links to a missing file: {target}"
