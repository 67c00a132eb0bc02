"""JSON output of values numpy and pathlib produce: one converter for every writer of results."""

from __future__ import annotations

import os
from typing import Any


def json_default(obj: Any) -> Any:
    """``default=`` of :func:`json.dumps`: numpy scalars and arrays as Python numbers and lists,
    paths as strings.

    Raises:
        TypeError: Anything else, so a value that JSON cannot hold fails loudly instead of being
            written as something else.
    """
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


__all__ = ["json_default"]
