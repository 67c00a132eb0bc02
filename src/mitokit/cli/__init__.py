"""The ``mitokit`` command line: a thin click group over the Python API.

Each command group lives in its own module and imports heavy libraries inside its commands, so
``mitokit --help`` stays fast. User-caused errors (:class:`mitokit.MitokitError`) become one line
on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys

import click

from mitokit import __version__
from mitokit.errors import MitokitError


class _NoteHandler(logging.Handler):
    """Notes of the library (``mitokit`` logger, warnings and up) as one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"mitokit: note: {record.getMessage()}", err=True)


def _show_notes() -> None:
    log = logging.getLogger("mitokit")
    if not any(isinstance(h, _NoteHandler) for h in log.handlers):
        log.addHandler(_NoteHandler(logging.WARNING))
        log.propagate = False


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit code 2.

    Outputs are written through :mod:`mitokit.io.atomic`, which reports a destination that
    cannot be written as :class:`~mitokit.io.atomic.OutputError` (a ``MitokitError``). Other
    ``OSError`` s pass as they are (they may be bugs), except those only writing can cause (no
    space left, quota, read-only file system, file too large), as when standard output is a
    full disk: they too become one line.
    """

    def invoke(self, ctx: click.Context):
        _show_notes()
        try:
            return super().invoke(ctx)
        except MitokitError as exc:
            _fail(ctx, exc)
        except OSError as exc:
            from mitokit.io.atomic import output_write_error

            on_stdout = _failed_on_stdout(exc) or not _flush_stdout()
            error = output_write_error(exc, "standard output" if on_stdout else "an output")
            if error is None:
                raise
            _fail(ctx, error)


def _failed_on_stdout(exc: BaseException) -> bool:
    """Whether the innermost call that raised ``exc`` was writing to standard output."""
    import io

    tb, frame = exc.__traceback__, None
    while tb is not None:
        frame, tb = tb.tb_frame, tb.tb_next
    if frame is None:
        return False
    try:
        out = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    for value in frame.f_locals.values():
        if isinstance(value, io.IOBase):
            with contextlib.suppress(OSError, ValueError):
                if value.fileno() == out:
                    return True
    return False


def _flush_stdout() -> bool:
    """Flush standard output; if it cannot take what it holds, drop that (at exit too)."""
    import os

    try:
        sys.stdout.flush()
        return True
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return False


def _fail(ctx: click.Context, exc: Exception) -> None:
    """One line on stderr, exit code 2."""
    _flush_stdout()
    click.echo(f"mitokit: error: {exc}", err=True)
    ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mitokit")
def cli() -> None:
    """mitokit: mitotic-figure detection and interpretation in H&E histopathology."""


def _register() -> None:
    from mitokit.cli.demo import demo
    from mitokit.cli.detect import detect
    from mitokit.cli.evaluate import evaluate
    from mitokit.cli.evaluate_patches import patches as evaluate_patches
    from mitokit.cli.evaluate_tiles import tiles as evaluate_tiles
    from mitokit.cli.export import export
    from mitokit.cli.generate import generate
    from mitokit.cli.labels import labels
    from mitokit.cli.predict import predict
    from mitokit.cli.slide import slide
    from mitokit.cli.synth import synth
    from mitokit.cli.train import train

    cli.add_command(slide)
    cli.add_command(labels)
    cli.add_command(evaluate)
    cli.add_command(synth)
    cli.add_command(demo)
    evaluate.add_command(evaluate_tiles)
    evaluate.add_command(evaluate_patches)
    cli.add_command(predict)
    cli.add_command(detect)
    cli.add_command(export)
    cli.add_command(train)
    cli.add_command(generate)
    from mitokit.cli.experiment import experiment

    cli.add_command(experiment)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and ``python -m mitokit``."""
    cli.main(args=argv, prog_name="mitokit", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
