"""Errors a user can cause.

Every problem that comes from the user's input (a missing file, an unknown format, a slide without
mpp, coordinates outside the image ...) raises :class:`MitokitError`. Its message names the file
and the problem in one line; the CLI prints it on stderr and exits with code 2, no traceback.
"""

from __future__ import annotations

import os


class MitokitError(ValueError):
    """A user-caused error whose message is fit for one line on stderr."""


def input_error(path: str | os.PathLike | None, problem: str) -> MitokitError:
    """Build a :class:`MitokitError` whose message reads ``"<path>: <problem>"``.

    Args:
        path: The file the problem is in, or None when there is no file.
        problem: What is wrong, in a short phrase.
    """
    problem = " ".join(str(problem).split())  # one line, whatever the cause said
    if path is None:
        return MitokitError(problem)
    return MitokitError(f"{os.fspath(path)}: {problem}")


def positive_float(path: str | os.PathLike | None, value: object, name: str) -> float:
    """``value`` as a finite float > 0, or a :class:`MitokitError` naming ``path`` and ``name``."""
    import math

    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise input_error(path, f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(result) and result > 0):
        raise input_error(path, f"{name} must be a positive number, got {value!r}")
    return result
