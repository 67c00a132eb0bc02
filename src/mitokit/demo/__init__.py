"""``mitokit demo``: the whole of mitokit on generated data, in minutes on a CPU.

:func:`run_demo` runs the stages in order; each lives in a module of this package, takes
``(out, report, *, size, seed, real_dir, say, ctx)`` and adds a section to the report.
"""

from mitokit.demo.core import FULL, QUICK, DemoSize, run_demo

__all__ = ["FULL", "QUICK", "DemoSize", "run_demo"]
