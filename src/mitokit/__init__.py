"""mitokit: mitotic-figure detection and interpretation in H&E histopathology."""

from mitokit.errors import MitokitError

__version__ = "0.1.0"
__all__ = ["MitokitError", "__version__"]
