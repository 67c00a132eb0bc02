"""Benchmark the synthetic H&E generator; prints one JSON object.

Measures (each slide write in a fresh subprocess, so its peak resident memory is its own):

- ``patches_10k_s``: seconds for 10,000 64 x 64 cell patches (target: < 60 s on 2 cores);
  ``patches_per_s``.
- ``slide_20k_s``: seconds to write a 20,000 x 20,000 pyramidal JPEG TIFF (target: < 120 s);
  ``slide_peak_rss_mib`` its peak resident memory (target: < 1024 MiB), ``slide_import_rss_mib``
  the part of it that importing mitokit already takes; ``slide_bytes``, ``slide_cells``.

Usage::

    python benchmarks/synth.py            # the full run
    python benchmarks/synth.py --quick    # 500 patches and a 4,000 x 4,000 slide
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_SLIDE_CHILD = r"""
import json, resource, sys, time
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from mitokit.data.synthetic.generate import write_synthetic_slide
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, size = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
cells = write_synthetic_slide(path, size=(size, size), seed=0)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": elapsed, "peak_kib": peak, "import_kib": imported, "cells": len(cells)}))
"""


def bench_patches(n: int) -> dict:
    from mitokit.data.synthetic.generate import generate_patches

    generate_patches(5, seed=1)  # warm up (imports, noise table)
    t = time.perf_counter()
    batch = generate_patches(n, seed=0)
    elapsed = time.perf_counter() - t
    assert batch.images.shape == (n, 64, 64, 3)
    return {
        "patches_n": n,
        "patches_s": round(elapsed, 2),
        "patches_per_s": round(n / elapsed, 1),
        "patches_10k_s": round(elapsed * 10_000 / n, 2),
    }


def bench_slide(size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.tif")
        out = subprocess.run(
            [sys.executable, "-c", _SLIDE_CHILD, path, str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        n_bytes = os.path.getsize(path)
    key = "slide_20k_s" if size == 20_000 else f"slide_{size}_s"
    return {
        "slide_size": size,
        key: round(result["s"], 2),
        "slide_mpix_per_s": round(size * size / 1e6 / result["s"], 2),
        "slide_peak_rss_mib": round(result["peak_kib"] / 1024, 1),
        "slide_import_rss_mib": round(result["import_kib"] / 1024, 1),
        "slide_bytes": n_bytes,
        "slide_cells": result["cells"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (seconds)")
    parser.add_argument("--patches", type=int, default=None, help="number of patches")
    parser.add_argument("--slide-size", type=int, default=None, help="slide width = height")
    args = parser.parse_args()
    n = args.patches or (500 if args.quick else 10_000)
    size = args.slide_size or (4_000 if args.quick else 20_000)
    result = {"cpus": os.cpu_count()}
    result.update(bench_patches(n))
    result.update(bench_slide(size))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
