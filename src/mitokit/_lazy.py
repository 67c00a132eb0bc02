"""Lazy attributes for package ``__init__`` modules (PEP 562 ``__getattr__``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` on first use of ``name``.

    Args:
        package: The package's ``__name__``, for the error message.
        names: Attribute name -> module that defines it.
        namespace: The package's ``globals()``; a loaded value is cached there, so later look-ups
            no longer reach ``__getattr__``.

    Returns:
        The function to bind as the package's ``__getattr__``.
    """

    def getattr_(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_
