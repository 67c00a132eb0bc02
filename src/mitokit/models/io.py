"""Former name of :mod:`mitokit.models.checkpoint` (model folders: save, find, load).

Kept so existing imports work; new code imports :mod:`mitokit.models.checkpoint`, which also
avoids confusion with :mod:`mitokit.io` (slides and annotation files).
"""

from mitokit.models.checkpoint import *  # noqa: F403
from mitokit.models.checkpoint import __all__  # noqa: F401
